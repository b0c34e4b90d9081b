#!/usr/bin/env bash
# Smoke test of the kernel harness (run on an IPVS kernel: test/vm/with-ipvs.sh -- bash test/vm/smoke.sh).
# Proves: IPVS sysctls exist; ipvsadm programs IPVS in a fresh netns; a scheduler module autoloads (VM); real TCP (v4 +
# v6) and UDP traffic through a VIP reaches the pods round-robin via masquerading, with the client address kept.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== [${SECONDS}s] $*"; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }

[ "$(id -u)" = 0 ] || fail "needs root"
echo "kernel $(uname -r), in VM: ${KIPVS_IN_VM:-0}"

step "IPVS is there and its sysctls exist"
[ -e /proc/net/ip_vs ] || modprobe ip_vs || true
[ -e /proc/net/ip_vs ] || fail "/proc/net/ip_vs missing: no IPVS in this kernel"
for s in conntrack expire_nodest_conn expire_quiescent_template sloppy_tcp sloppy_sctp conn_reuse_mode \
         schedule_icmp ignore_tunneled run_estimation; do
    [ -e "/proc/sys/net/ipv4/vs/$s" ] || fail "missing sysctl net.ipv4.vs.$s"
done
echo "net.ipv4.vs.*: $(ls /proc/sys/net/ipv4/vs | wc -l) sysctls"

KT=kts$$
trap kt_teardown EXIT

step "ipvsadm in a fresh netns"
ns=$KT-ipvsadm
kt_netns_add ipvsadm   # lo up: see lib.sh for why a dest add fails with EINVAL otherwise
ip netns exec "$ns" ipvsadm -A -t 10.0.0.1:80 -s rr
ip netns exec "$ns" ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m
got=$(ip netns exec "$ns" ipvsadm -Sn)
expect_eq "$got" "-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1" "ipvsadm -Sn"
echo "$got"
# The service lives in that netns only.
if ipvsadm -Sn | grep -q '10\.0\.0\.1:80'; then fail "service leaked into the init netns"; fi

step "scheduler mh autoloads (in the VM; elsewhere it may be loaded already)"
# The VM loads every scheduler up front: unload mh, so that its load below is the kernel's request_module
# (through the initramfs modprobe), which is what a scheduler the VM does not preload relies on.
if [ "${KIPVS_IN_VM:-0}" = 1 ] && [ -d /sys/module/ip_vs_mh ]; then
    rmmod ip_vs_mh || fail "cannot unload ip_vs_mh to see it autoload"
    [ ! -d /sys/module/ip_vs_mh ] || fail "ip_vs_mh still loaded"
fi
ip netns exec "$ns" ipvsadm -A -t 10.0.0.2:80 -s mh
ip netns exec "$ns" ipvsadm -Sn | grep -qx -- '-A -t 10.0.0.2:80 -s mh' || fail "mh service not listed"
[ -d /sys/module/ip_vs_mh ] || fail "ip_vs_mh not loaded"
for s in rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh; do
    ip netns exec "$ns" ipvsadm -A -u 10.0.0.3:$((1000 + ${#s})) -s "$s" 2>/dev/null \
        || ip netns exec "$ns" ipvsadm -E -u 10.0.0.3:$((1000 + ${#s})) -s "$s" || fail "scheduler $s"
done
echo "all 13 schedulers accepted"
ip netns del "$ns"

step "traffic: client netns -> VIP -> 2 pods, masq, rr"
kt_init "$KT"
kt_vip_add 10.0.0.10 fd00::10
kt_pod_add pod-a 10.0.1.1 fd00:1::1
kt_pod_add pod-b 10.0.1.2 fd00:1::2
kt_client_add cli 10.0.2.1 fd00:2::1
expect_eq "$(kt_http_get cli 10.0.1.1 80)" "pod-a" "direct request to pod-a"

kt_ipvsadm -A -t 10.0.0.10:80 -s rr
kt_ipvsadm -a -t 10.0.0.10:80 -r 10.0.1.1:80 -m
kt_ipvsadm -a -t 10.0.0.10:80 -r 10.0.1.2:80 -m
seen=''
for _ in 1 2 3 4; do seen="$seen $(kt_http_get cli 10.0.0.10 80)"; done
echo "answers:$seen"
case $seen in
    " pod-a pod-b pod-a pod-b"|" pod-b pod-a pod-b pod-a") ;;
    *) fail "expected rr alternation of pod-a/pod-b, got:$seen" ;;
esac
who=$(kt_http_get cli 10.0.0.10 80 /cgi-bin/whoami)
echo "whoami: $who"
case $who in pod-[ab]\ 10.0.2.1) ;; *) fail "masq should keep the client address, got [$who]" ;; esac
# Counters reach userspace through the estimator, which folds the per-CPU stats every 2 s: poll.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    conns=$(kt_ipvsadm -Ln --stats | awk '$1 == "TCP" { print $3 }')
    [ "$conns" -lt 5 ] || break
    sleep 1
done
kt_ipvsadm -Ln --stats
[ "$conns" -ge 5 ] || fail "IPVS counted $conns connections, want >= 5"

step "traffic from the node itself (local client) -> VIP"
got=$(kt_http_get node 10.0.0.10 80)
case $got in pod-a|pod-b) echo "node -> VIP: $got" ;; *) fail "node-local request through the VIP: [$got]" ;; esac

step "IPv6: client -> [fd00::10]:80 -> pods"
kt_ipvsadm -A -t '[fd00::10]:80' -s rr
kt_ipvsadm -a -t '[fd00::10]:80' -r '[fd00:1::1]:80' -m
kt_ipvsadm -a -t '[fd00::10]:80' -r '[fd00:1::2]:80' -m
seen=''
for _ in 1 2; do seen="$seen $(kt_http_get cli fd00::10 80)"; done
echo "answers:$seen"
case $seen in " pod-a pod-b"|" pod-b pod-a") ;; *) fail "v6 rr: got:$seen" ;; esac

step "UDP: client -> 10.0.0.10:53 -> pods"
kt_serve_udp pod-a 53
kt_serve_udp pod-b 53
kt_ipvsadm -A -u 10.0.0.10:53 -s rr
kt_ipvsadm -a -u 10.0.0.10:53 -r 10.0.1.1:53 -m
kt_ipvsadm -a -u 10.0.0.10:53 -r 10.0.1.2:53 -m
a=$(kt_udp_get cli 10.0.0.10 53)
b=$(kt_udp_get cli 10.0.0.10 53)
echo "answers: $a / $b"
case "$a/$b" in "pod-a 10.0.2.1/pod-b 10.0.2.1"|"pod-b 10.0.2.1/pod-a 10.0.2.1") ;; *) fail "udp rr: $a / $b" ;; esac

kt_ipvsadm -Sn
kt_teardown
[ -z "$(ip netns list | grep "^$KT-" || true)" ] || fail "teardown left namespaces behind"
echo "SMOKE OK (${SECONDS}s)"
