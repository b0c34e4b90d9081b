#!/usr/bin/env bash
# End-to-end: `kipvs reconcile` on a real IPVS kernel, pods as network namespaces running HTTP servers that
# answer with their name, a client namespace sending the traffic. Run on an IPVS kernel:
#   test/vm/with-ipvs.sh -- bash test/e2e/reconcile.sh
# Checks every "done when" of the one-shot reconcile: the table (ipvsadm -Sn) for the fixture, traffic on every
# ClusterIP and NodePort, rr 10/10/10, sh and ClientIP affinity pinning, lc, graceful drain of a terminating pod,
# foreign/headless/ExternalName left alone, a second run with zero kernel writes, and bad input.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
. test/vm/lib.sh

KIPVS=${KIPVS:-$repo/build/kipvs}
FIX=test/fixtures/e2e
PASS=0
FAIL=0
fail() { echo "FAIL: $*" >&2; FAIL=$((FAIL + 1)); }
ok() { echo "ok: $*"; PASS=$((PASS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
step() { echo; echo "== $*"; }

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
[ -x "$KIPVS" ] || { echo "no $KIPVS: build first" >&2; exit 1; }

KT_HTTP_PORT=8080
kt_init "ke$$"
trap kt_teardown EXIT
for i in 1 2 3; do kt_pod_add "pod-$i" "10.0.1.$i" "fd00:1::$i"; done
for i in 1 2 3; do kt_serve_udp "pod-$i" 5353; done
kt_client_add cli 10.0.2.1 fd00:2::1
kt_client_add cli2 10.0.2.2

kipvs() { kt_node_exec "$KIPVS" reconcile --node-name node-a --node-ip 10.0.2.254 "$@"; }
table() { kt_ipvsadm -Sn | sort; }
# histogram of answers: "N pod-x" lines
hist() { sort | uniq -c | awk '{print $2"="$1}' | sort | tr '\n' ' '; }
# get N FROM VIP PORT: N sequential requests, one answer per line
get() { local n=$1 i; shift; for i in $(seq "$n"); do kt_http_get "$@"; done; }
# get_from BASE N FROM VIP PORT: the same from source ports BASE+1..BASE+N, each used once in the whole test
# (kt_http_get_from), for checks that count where the scheduler sent each request.
get_from() { local base=$1 n=$2 i; shift 2; for i in $(seq "$n"); do kt_http_get_from "$1" $((base + i)) "$2" "$3"; done; }
has_rule() { kt_ipvsadm -Sn | grep -q -- "$1"; }
lacks_rule() { ! kt_ipvsadm -Sn | grep -q -- "$1"; }

step "a foreign virtual server exists before kipvs runs"
kt_ipvsadm -A -t 172.16.0.1:80 -s wlc

step "malformed input changes nothing"
before=$(table)
set +e
out=$(kipvs -f test/fixtures/malformed.json 2>&1); rc=$?
set -e
echo "$out"
check "malformed JSON exits 2" [ "$rc" = 2 ]
check "the error names the file and position" grep -qE 'malformed.json: invalid JSON at byte [0-9]+ \(line [0-9]+, column [0-9]+\)' <<<"$out"
check "kernel table untouched" [ "$(table)" = "$before" ]
set +e
kipvs -f test/fixtures/malformed.json -o json >"$KT_DIR/malformed.out" 2>/dev/null; rc=$?
set -e
check "with -o json: exit 2, and stdout is one JSON object saying why" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exitCode"] == 2 and "malformed.json: invalid JSON at byte" in d["fatal"]["message"], d
' "$KT_DIR/malformed.out"

step "an input file that shrinks while it parses changes nothing"
# Input files are mapped: one truncated mid-parse faults (SIGBUS). kipvs must say so, exit 2, and have
# written nothing. The file is cut once /proc shows it mapped; a run that parsed it all before the cut
# (too fast to catch) goes again in a fresh namespace, up to 5 times, and the check fails if none is caught.
python3 bench/gen_cluster.py --compact 5000 10 > "$KT_DIR/big.json"
shrunk=""
for attempt in 1 2 3 4 5; do
    kt_netns_add "shrink$attempt"
    ns="$KT-shrink$attempt"
    cp "$KT_DIR/big.json" "$KT_DIR/shrink.json"
    ip netns exec "$ns" "$KIPVS" reconcile --node-name n --node-ip 127.0.0.1 -f "$KT_DIR/shrink.json" -o json \
        > "$KT_DIR/shrink.stdout" 2> "$KT_DIR/shrink.out" &
    pid=$!
    for _ in $(seq 3000); do
        grep -q "$KT_DIR/shrink.json" "/proc/$pid/maps" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
    done
    truncate -s 100000 "$KT_DIR/shrink.json"
    set +e
    wait "$pid"; rc=$?
    set -e
    left=$(( $(ip netns exec "$ns" ipvsadm -Sn | wc -l) + $(ip -n "$ns" -o link show kipvs0 2>/dev/null | wc -l || true) ))
    ip netns del "$ns"
    if grep -q 'SIGBUS: an input file shrank while it was being read' "$KT_DIR/shrink.out"; then
        shrunk="attempt $attempt: exit $rc, $left table lines and dummy interfaces"
        break
    fi
    echo "attempt $attempt: the parse was over before the cut (exit $rc)"
done
echo "$shrunk"
check "a file cut mid-parse is named as such (SIGBUS), exit 2, table untouched ($shrunk)" \
    [ -n "$shrunk" -a "$rc" = 2 -a "$left" = 0 ]
check "with -o json, stdout is one JSON object saying so ($(cat "$KT_DIR/shrink.stdout"))" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exitCode"] == 2 and d["fatal"]["message"].startswith("SIGBUS: an input file shrank"), d
' "$KT_DIR/shrink.stdout"

step "dry run prints the plan, touches nothing"
out=$(kipvs -f $FIX/cluster.json --dry-run)
echo "$out"
check "dry run plans the ClusterIP" grep -q '+ service TCP 10.96.0.10:80' <<<"$out"
check "dry run says the foreign service is left alone" grep -q 'left alone TCP 172.16.0.1:80' <<<"$out"
check "dry run wrote nothing" [ "$(table)" = "$before" ]

step "reconcile the fixture"
kipvs -f $FIX/cluster.json
kt_ipvsadm -Ln
table > "$KT_DIR/table"
sort $FIX/expected.ipvsadm > "$KT_DIR/expected"
check "ipvsadm -Sn equals the expected table" diff "$KT_DIR/expected" "$KT_DIR/table"
# --vip-mode=route (the default): each VIP a local route through kipvs0, no address.
vips() { kt_node_exec sh -c 'ip -o -4 route show table local proto 241 dev kipvs0; ip -o -6 route show table local proto 241 dev kipvs0' |
    awk '{print $1, $2}' | sort | tr '\n' ' '; }
all_vips="local 10.96.0.10 local 10.96.0.11 local 10.96.0.12 local 10.96.0.13 local 10.96.0.14 local 10.96.0.15 local 10.96.0.16 local 10.96.0.53 local 192.0.2.10 local fd00:96::16 "
check "VIPs are local routes through kipvs0 ($(vips))" [ "$(vips)" = "$all_vips" ]
check "and not addresses on it" [ -z "$(kt_node_exec ip -o addr show dev kipvs0 scope global)" ]
check "ExternalName (even with a clusterIP) got no virtual server" lacks_rule 10.96.0.99
check "headless got no virtual server (only the 8 VIPs' services, 2 NodePorts and the foreign one)" \
    [ "$(kt_ipvsadm -Sn | grep -c '^-A')" = 13 ]
check "sysctl net.ipv4.vs.conntrack=1" [ "$(kt_node_exec cat /proc/sys/net/ipv4/vs/conntrack)" = 1 ]
check "sysctl net.ipv4.vs.expire_nodest_conn=1" [ "$(kt_node_exec cat /proc/sys/net/ipv4/vs/expire_nodest_conn)" = 1 ]

step "every ClusterIP:port and NodePort answers"
for vip in 10.96.0.10 10.96.0.11 10.96.0.12 10.96.0.13 10.96.0.14 192.0.2.10; do  # (10.96.0.15: kept idle for the drain test)
    a=$(kt_http_get cli $vip 80 || true)
    check "$vip:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
done
a=$(get_from 20100 6 cli fd00:96::16 80 | hist)
check "dual-stack Service: [fd00:96::16]:80 spreads over the pods' v6 addresses ($a)" [ "$a" = "pod-1=2 pod-2=2 pod-3=2 " ]
a=$(kt_http_get cli 10.96.0.16 80 || true)
check "dual-stack Service: 10.96.0.16:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
a=$(kt_http_get node 10.96.0.10 80 || true)
check "from the node itself (hostNetwork clients): 10.96.0.10:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
a=$(kt_http_get node fd00:96::16 80 || true)
check "from the node itself: [fd00:96::16]:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
for np in 30080 30081; do
    a=$(kt_http_get cli 10.0.2.254 $np || true)
    check "NodePort 10.0.2.254:$np answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
done
a=$(kt_udp_get cli 10.96.0.53 53 || true)
check "UDP 10.96.0.53:53 answers ($a)" grep -qE '^pod-[123] 10.0.2.1$' <<<"$a"
a=$(get 4 cli 192.0.2.10 80 | hist)
check "externalTrafficPolicy Local: LB IP only reaches node-a's endpoint ($a)" [ "$a" = "pod-1=4 " ]

step "rr: 30 requests over 3 ready pods land 10/10/10"
# The kernel's per-real-server connection totals, to tell on failure whether rr itself was uneven or another
# connection (or a reused one that skipped scheduling) got in between (seen twice with automatic source
# ports: 30 answers from 28 scheduled connections; hence get_from).
rr_conns() { kt_ipvsadm -Ln --stats -t 10.96.0.10:80 | awk '$1 == "->" {print $2 "=" $3}' | tr '\n' ' '; }
before=$(rr_conns)
a=$(get_from 20000 30 cli 10.96.0.10 80 | hist)
if [ "$a" = "pod-1=10 pod-2=10 pod-3=10 " ]; then
    ok "rr split is 10/10/10 ($a)"
else
    fail "rr split is 10/10/10 ($a)"
    echo "  kernel connection totals before: $before"
    echo "  kernel connection totals after:  $(rr_conns)"
    kt_ipvsadm -Lnc | grep -F 10.96.0.10:80 | sed 's/^/  /' || true
fi

step "sh keeps one client on one pod"
a=$(get 10 cli 10.96.0.11 80 | hist)
check "sh: 10 requests from one client on one pod ($a)" grep -qE '^pod-[123]=10 $' <<<"$a"

step "ClientIP affinity pins a client"
a=$(get 10 cli 10.96.0.13 80 | hist)
check "affinity: 10 requests on one pod ($a)" grep -qE '^pod-[123]=10 $' <<<"$a"
b=$(get 10 cli2 10.96.0.13 80 | hist)
check "affinity: a second client is pinned too ($b)" grep -qE '^pod-[123]=10 $' <<<"$b"

# hold CLIENT VIP PORT NAME: an idle TCP connection through the VIP, held until $KT_DIR/NAME.go appears;
# then sends GET, writes the answer to $KT_DIR/NAME.out and closes with RST (IPVS CLOSE state: 10 s).
hold() {
    ip netns exec "$KT-$1" python3 -c '
import os, socket, struct, sys, time
vip, port, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((vip, port), timeout=10)
open(base + ".up", "w").close()
while not os.path.exists(base + ".go"):
    time.sleep(0.1)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
open(base + ".out", "wb").write(data.split(b"\r\n\r\n", 1)[-1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
' "$2" "$3" "$KT_DIR/$4" </dev/null >>"$KT_DIR/$4.log" 2>&1 &
    echo $! >> "$KT_DIR/pids"
    disown $!
    local i
    for i in $(seq 100); do [ -e "$KT_DIR/$4.up" ] && return 0; sleep 0.1; done
    echo "hold $4: no connection" >&2; cat "$KT_DIR/$4.log" >&2; return 1
}
# active VIP PORT: "ip:port=active" for each real server
active() { kt_ipvsadm -Ln -t "$1:$2" | awk '$1 == "->" && $2 ~ /^[0-9]/ {print $2"="$5}' | tr '\n' ' '; }

step "lc sends new connections to the pod with fewer open ones"
hold cli 10.96.0.12 80 lc1
hold cli 10.96.0.12 80 lc2
echo "active: $(active 10.96.0.12 80)"
busy=$(kt_ipvsadm -Ln -t 10.96.0.12:80 | awk '$1 == "->" && $5 == 1 {print $2}' | sort | tr '\n' ' ')
check "two held connections on two different pods ($busy)" [ "$(wc -w <<<"$busy")" = 2 ]
# The imbalance view: kipvs dump reads the same per-real-server counters from the kernel.
section=$(kt_node_exec "$KIPVS" dump | awk '/^TCP 10.96.0.12:80 /{f=1; next} /^[A-Z]/{f=0} f')
echo "$section"
for b in $busy; do
    check "kipvs dump shows the held connection on $b" grep -qE -- "-> ${b//./\\.} +masq +1 +1 " <<<"$section"
done
idle=$(kt_ipvsadm -Ln -t 10.96.0.12:80 | awk '$1 == "->" && $5 == 0 && $2 ~ /^10/ {print $2}')
want="pod-${idle%%:*}"; want="pod-${want##*.}"
a=$(get_from 20200 5 cli 10.96.0.12 80 | hist)
check "lc: 5 new connections all go to the idle pod $want ($a)" [ "$a" = "$want=5 " ]
touch "$KT_DIR/lc1.go" "$KT_DIR/lc2.go"

step "mh as the default scheduler: with mh-port, as kube-proxy sets it, one client's connections spread over the pods"
# An edit in place keeps the virtual server, and with it the kernel's connection counter (from rr's 30 and
# more); a delete + add would start it again at 0.
svc_conns() { kt_ipvsadm -Ln --stats -t 10.96.0.10:80 | awk '$1 == "TCP" {print $3}'; }
conns_before=$(svc_conns)
check "10.96.0.10:80 has counted rr's connections before the edits ($conns_before)" [ "${conns_before:-0}" -ge 30 ]
kipvs -f $FIX/cluster.json --scheduler mh > "$KT_DIR/mh.out"
check "the scheduler change is planned as an update, not a delete and add" \
    bash -c "grep -q '~ service TCP 10.96.0.10:80 -s rr => -s mh' '$KT_DIR/mh.out' && ! grep -q -- '- service TCP 10.96.0.10:80' '$KT_DIR/mh.out'"
rule=$(kt_ipvsadm -Sn | grep -- '-A -t 10.96.0.10:80 ' || true)
check "10.96.0.10:80 is mh with mh-port ($rule)" grep -qE -- '-s mh .*-b mh-port' <<<"$rule"
a=$(get_from 20300 12 cli 10.96.0.10 80 | hist)
check "12 connections from one client, from 12 source ports, reach more than one pod ($a)" [ "$(wc -w <<<"$a")" -gt 1 ]
kipvs -f $FIX/cluster.json > "$KT_DIR/mh-back.out"
check "without --scheduler mh: rr again" has_rule '-A -t 10.96.0.10:80 -s rr'
check "edited in place twice: the service's connection counter was kept ($(svc_conns) >= $conns_before)" \
    [ "$(svc_conns)" -ge "${conns_before:-1}" ]

step "a terminating pod: its open connection keeps working, new connections avoid it"
hold cli 10.96.0.15 80 drain
victim=$(kt_ipvsadm -Ln -t 10.96.0.15:80 | awk '$1 == "->" && $5 == 1 {print $2}')
check "the held connection is on one pod ($victim)" grep -qE '^10\.0\.1\.[123]:8080$' <<<"$victim"
vip_ip=${victim%%:*}
python3 - "$FIX/cluster.json" "$vip_ip" > "$KT_DIR/step2.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for it in doc["items"]:
    if it["kind"] == "EndpointSlice" and it["metadata"]["name"] == "web-drain-x1":
        for ep in it["endpoints"]:
            if ep["addresses"][0] == sys.argv[2]:
                ep["conditions"] = {"ready": False, "serving": True, "terminating": True}
json.dump(doc, sys.stdout)
EOF
out=$(kipvs -f "$KT_DIR/step2.json" --drain skip)
echo "$out"
check "plan says the pod drains at weight 0" grep -q "draining at weight 0" <<<"$out"
check "the terminating pod is at weight 0" has_rule "-a -t 10.96.0.15:80 -r $victim -m -w 0"
others=$(get 12 cli 10.96.0.15 80 | hist)
vpod="pod-${vip_ip##*.}"
check "12 new connections avoid $vpod ($others)" bash -c "! grep -q '$vpod' <<<'$others' && [ \$(wc -w <<<'$others') = 2 ]"
touch "$KT_DIR/drain.go"
for i in $(seq 100); do [ -e "$KT_DIR/drain.out" ] && break; sleep 0.1; done
check "the open connection still works and reaches $vpod" [ "$(cat "$KT_DIR/drain.out" 2>/dev/null)" = "$vpod" ]

# The held connection closed with RST: its IPVS entry expires in the CLOSE state (10 s). Like kube-proxy, a
# real server counts as drained only when both its active and inactive (closing) connections are gone.
step "the pod gone from its EndpointSlice: --drain wait removes it once its connections are gone"
python3 - "$KT_DIR/step2.json" "$vip_ip" > "$KT_DIR/step3.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for it in doc["items"]:
    if it["kind"] == "EndpointSlice" and it["metadata"]["name"] == "web-drain-x1":
        it["endpoints"] = [ep for ep in it["endpoints"] if ep["addresses"][0] != sys.argv[2]]
json.dump(doc, sys.stdout)
EOF
# Whether web-drain-x1 in input $1 lists the victim (other slices share its pods).
in_drain_slice() {
    python3 -c 'import json, sys
doc = json.load(open(sys.argv[1]))
eps = [ep for it in doc["items"] if it["metadata"]["name"] == "web-drain-x1" for ep in it["endpoints"]]
sys.exit(0 if any(ep["addresses"][0] == sys.argv[2] for ep in eps) else 1)' "$1" "$vip_ip"
}
step3_drops_it() { in_drain_slice "$KT_DIR/step2.json" && ! in_drain_slice "$KT_DIR/step3.json"; }
check "web-drain-x1 lists $vip_ip in step2.json, not in step3.json" step3_drops_it
check "it is still in the table at weight 0 (its closing connection)" has_rule "-a -t 10.96.0.15:80 -r $victim -m -w 0"
out=$(kipvs -f "$KT_DIR/step3.json" --drain wait --drain-timeout 60)
echo "$out"
check "its closing connection kept it at weight 0 until it expired (not removed at once)" \
    grep -qE '^drained: removed the last departing real servers after [0-9.]+s$' <<<"$out"
check "the drained pod left the table" lacks_rule "-a -t 10.96.0.15:80 -r $victim"
check "the ready pods stay" [ "$(kt_ipvsadm -Sn | grep -c -- '-a -t 10.96.0.15:80 ')" = 2 ]

step "a second reconcile of the same input: empty plan, zero kernel writes"
out=$(kipvs -f "$KT_DIR/step3.json" -o json)
echo "$out" | head -c 600; echo
check "zero kernel writes (client write counter)" grep -q '"kernelWrites":0' <<<"$out"
check "empty plan" grep -q '"writes":0' <<<"$out"
check "no VIP to bind, unbind or convert" grep -q '"bind":\[\],"unbind":\[\],"convert":\[\]' <<<"$out"
txt=$(kipvs -f "$KT_DIR/step3.json")
converged_text() { grep -q '^Applied 0 of 0 planned writes (0 kernel write requests sent, 0 failed)$' <<<"$txt" && ! grep -q 'host:' <<<"$txt"; }
check "text: nothing planned, no host change (routes, link, sysctls)" converged_text
# The table read took every virtual server's real servers from /proc/net/ip_vs (none is fwmark or
# tunnelled); --table-read=netlink dumps them per virtual server, and sees the same converged table.
log=$(kipvs -f "$KT_DIR/step3.json" -o json -v 1 2>&1 >/dev/null)
n_vs=$(kt_ipvsadm -Sn | grep -c '^-A')
check "the read took the real servers of all $n_vs virtual servers from /proc/net/ip_vs" \
    grep -q "the real servers of $n_vs virtual servers from /proc/net/ip_vs, of 0 over netlink" <<<"$log"
out=$(kipvs -f "$KT_DIR/step3.json" -o json --table-read=netlink -v 1 2>"$KT_DIR/netlink.log")
check "--table-read=netlink: zero kernel writes" grep -q '"kernelWrites":0' <<<"$out"
check "--table-read=netlink: the real servers of every virtual server over netlink" \
    grep -q "of 0 virtual servers from /proc/net/ip_vs, of $n_vs over netlink" "$KT_DIR/netlink.log"

step "--vip-mode=address converts every VIP to an address on kipvs0 (kube-proxy's way), and back"
out=$(kipvs -f "$KT_DIR/step3.json" --vip-mode=address -o json)
check "converting to addresses needed no IPVS write" grep -q '"kernelWrites":0' <<<"$out"
addrs() { kt_node_exec ip -o addr show dev kipvs0 scope global | awk '{print $4}' | sort | tr '\n' ' '; }
check "VIPs are addresses now ($(addrs))" [ "$(addrs)" = \
    "10.96.0.10/32 10.96.0.11/32 10.96.0.12/32 10.96.0.13/32 10.96.0.14/32 10.96.0.15/32 10.96.0.16/32 10.96.0.53/32 192.0.2.10/32 fd00:96::16/128 " ]
check "and kipvs's local routes are gone" [ -z "$(vips)" ]
a=$(kt_http_get cli 10.96.0.10 80 || true)
check "address mode: 10.96.0.10:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
a=$(kt_http_get cli fd00:96::16 80 || true)
check "address mode: [fd00:96::16]:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
out=$(kipvs -f "$KT_DIR/step3.json" -o json)
check "back to route mode: routes again ($(vips))" [ "$(vips)" = "$all_vips" ]
check "back to route mode: no addresses left" [ -z "$(addrs)" ]
check "converting back needed no IPVS write" grep -q '"kernelWrites":0' <<<"$out"
a=$(kt_http_get cli 10.96.0.10 80 || true)
check "route mode again: 10.96.0.10:80 answers ($a)" grep -qE '^pod-[123]$' <<<"$a"

step "kipvs0 set down: the kernel drops its IPv6 routes; the next reconcile brings it up and restores them"
kt_node_exec ip link set kipvs0 down
check "while down: the v4 routes stay, the v6 one is gone ($(vips))" [ "$(vips)" = "${all_vips%local fd00:96::16 }" ]
out=$(kipvs -f "$KT_DIR/step3.json" -o json)
check "kipvs0 up again" kt_node_exec sh -c 'ip -o link show kipvs0 | grep -q "[<,]UP[,>]"'
check "every VIP route restored ($(vips))" [ "$(vips)" = "$all_vips" ]
check "the IPVS table needed no write" grep -q '"kernelWrites":0' <<<"$out"
a=$(kt_http_get cli 10.96.0.10 80 || true)
check "10.96.0.10:80 answers again ($a)" grep -qE '^pod-[123]$' <<<"$a"
a=$(kt_http_get cli fd00:96::16 80 || true)
check "[fd00:96::16]:80 answers again ($a)" grep -qE '^pod-[123]$' <<<"$a"

step "an externalIP naming the node (route mode): kipvs records its virtual server and deletes it once unwanted; a foreign one on the node address stays"
kt_ipvsadm -A -t 10.0.2.254:22 -s wlc
python3 - "$KT_DIR/step3.json" > "$KT_DIR/nodeip.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for i in doc["items"]:
    if i.get("kind") == "Service" and i["metadata"]["name"] == "web":
        i["spec"]["externalIPs"] = ["10.0.2.254"]
json.dump(doc, sys.stdout)
EOF
state="$KT_DIR/state"
record() { cat "$state"/owned-netns-* 2>/dev/null | grep -v '^#' || true; }
out=$(kipvs -f "$KT_DIR/nodeip.json" --state-dir "$state")
echo "$out" | tail -4
check "the virtual server on the node address is there" has_rule '-A -t 10.0.2.254:80 -s rr'
a=$(kt_http_get cli 10.0.2.254 80 || true)
check "10.0.2.254:80 answers from a pod ($a)" grep -qE '^pod-[123]$' <<<"$a"
# NodePorts (30000-32767) on the node address are recorded too: marked by the address only while the node has it.
nodeports() { record | grep -E ':3[0-2][0-9]{3}$' | sort | tr '\n' ' '; }
others() { record | grep -vE ':3[0-2][0-9]{3}$' || true; }
check "the record names it and the NodePorts on the node address, nothing else ($(record | tr '\n' ' '))" \
    [ "$(others)" = "TCP 10.0.2.254:80" -a "$(nodeports)" = "TCP 10.0.2.254:30080 TCP 10.0.2.254:30081 " ]
check "the record is this namespace's file, owned-netns-cookie-N ($(ls "$state"))" \
    grep -qxE 'owned-netns-cookie-[0-9]+' <<<"$(ls "$state")"
out=$(kipvs -f "$KT_DIR/nodeip.json" --state-dir "$state" -o json)
check "a second run: zero kernel writes" grep -q '"kernelWrites":0' <<<"$out"
out=$(kipvs -f "$KT_DIR/step3.json" --state-dir "$state")
echo "$out" | grep -F '10.0.2.254' || true
check "without the externalIP its virtual server is deleted" lacks_rule '-A -t 10.0.2.254:80'
check "the foreign one on the node address stays" has_rule '-A -t 10.0.2.254:22 -s wlc'
check "the plan lists it as left alone" grep -q 'left alone TCP 10.0.2.254:22' <<<"$out"
check "the record holds the NodePorts only ($(record | tr '\n' ' '))" \
    [ -z "$(others)" -a "$(nodeports)" = "TCP 10.0.2.254:30080 TCP 10.0.2.254:30081 " ]
kt_ipvsadm -D -t 10.0.2.254:22

step "a NodePort virtual server on an address the node no longer has (its lease changed) is deleted; a foreign one there stays"
kt_ipvsadm -A -t 10.0.2.254:30099 -s wlc   # someone else's, in the NodePort range
out=$(kt_node_exec "$KIPVS" reconcile --node-name node-a --node-ip 10.0.2.253 -f "$KT_DIR/step3.json" --state-dir "$state")
echo "$out" | grep -F '10.0.2.25' || true
check "the NodePorts moved to the new address" has_rule '-A -t 10.0.2.253:30080'
check "... off the old one (30080)" lacks_rule '-A -t 10.0.2.254:30080'
check "... off the old one (30081)" lacks_rule '-A -t 10.0.2.254:30081'
check "the foreign one on the old address stays" has_rule '-A -t 10.0.2.254:30099 -s wlc'
check "the record follows ($(record | tr '\n' ' '))" \
    [ "$(nodeports)" = "TCP 10.0.2.253:30080 TCP 10.0.2.253:30081 " ]
out=$(kipvs -f "$KT_DIR/step3.json" --state-dir "$state")
check "back on the first address: the NodePorts are there again" has_rule '-A -t 10.0.2.254:30080'
check "... and gone from the other" lacks_rule '-A -t 10.0.2.253:30080'
a=$(kt_http_get cli 10.0.2.254 30080 || true)
check "10.0.2.254:30080 answers from a pod ($a)" grep -qE '^pod-[123]$' <<<"$a"
# On a node address again, in the range: kipvs's by the NodePort rule (as the README says), and unwanted.
check "the one in the NodePort range on it is owned again, and goes" lacks_rule '-A -t 10.0.2.254:30099'

step "an invalid Service is named and skipped; the rest is applied"
python3 - "$KT_DIR/step3.json" > "$KT_DIR/bad.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "broken"},
       "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.300", "ports": [{"name": "http", "port": 80}]}}
sched = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "nosched",
         "annotations": {"kipvs.io/scheduler": "bogus"}},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.77", "ports": [{"name": "http", "port": 80}]}}
new = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "fresh"},
       "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.88", "ports": [{"name": "http", "port": 80}]}}
doc["items"] += [bad, sched, new]
json.dump(doc, sys.stdout)
EOF
set +e
out=$(kipvs -f "$KT_DIR/bad.json" 2>"$KT_DIR/bad.err"); rc=$?
set -e
cat "$KT_DIR/bad.err"
check "exit 1 for a partial failure" [ "$rc" = 1 ]
check "the bad IP is named" grep -q 'default/broken' "$KT_DIR/bad.err"
check "the unknown scheduler is named" grep -q 'default/nosched' "$KT_DIR/bad.err"
check "the good new Service is applied" has_rule '-A -t 10.96.0.88:80 -s rr'
check "the foreign service is still there" has_rule '-A -t 172.16.0.1:80 -s wlc'

step "a Service that turns invalid keeps what it has: its virtual servers, real servers and VIP stay, and it answers"
python3 - "$KT_DIR/bad.json" > "$KT_DIR/kept.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
items = []
for i in doc["items"]:
    meta = i.get("metadata", {})
    if i["kind"] == "EndpointSlice" and meta.get("labels", {}).get("kubernetes.io/service-name") == "web":
        continue  # its endpoints gone too: nothing of web may change while it is invalid
    if i["kind"] == "Service" and meta.get("name") == "web":
        meta.setdefault("annotations", {})["kipvs.io/scheduler"] = "rrr"  # a typo
    items.append(i)
doc["items"] = items
json.dump(doc, sys.stdout)
EOF
web_rules() { kt_ipvsadm -Sn | grep -E -- ' (10\.96\.0\.10:80|10\.0\.2\.254:30080)( |$)' | sort; }
web_before=$(web_rules)
web_there() { [ "$(grep -c -- '^-A -t ' <<<"$web_before")" = 2 ] && [ "$(grep -c -- '^-a -t ' <<<"$web_before")" -ge 2 ]; }
check "web's rules are there to compare: ClusterIP and NodePort, with real servers" web_there
set +e
kipvs -f "$KT_DIR/kept.json" >"$KT_DIR/kept.out" 2>"$KT_DIR/kept.err"; rc=$?
set -e
check "exit 1: the typo is an error" [ "$rc" = 1 ]
check "it names the Service and the scheduler" grep -q 'Service default/web: unknown IPVS scheduler "rrr"' "$KT_DIR/kept.err"
check "the plan says its virtual servers are kept as they are" \
    grep -q 'kept TCP 10.96.0.10:80 as it is (its Service is invalid' "$KT_DIR/kept.out"
check "ClusterIP and NodePort virtual servers and their real servers unchanged" [ "$web_before" = "$(web_rules)" ]
check "its VIP stays local" grep -q 'local 10.96.0.10 ' <<<"$(vips)"
a=$(kt_http_get cli 10.96.0.10 80 || true)
check "10.96.0.10:80 still answers ($a)" grep -qE '^pod-[123]$' <<<"$a"
set +e
kipvs -f "$KT_DIR/bad.json" >"$KT_DIR/kept2.out" 2>&1
set -e
check "fixed again: nothing of it to write" [ "$web_before" = "$(web_rules)" ]

step "one writer per table: a reconcile waits for the lock another kipvs holds, or gives up changing nothing"
python3 - "$KT_DIR/bad.json" > "$KT_DIR/locked.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["items"] = [i for i in doc["items"] if i["metadata"]["name"] not in ("broken", "nosched")]
doc["items"].append({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "locked"},
                     "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.99", "ports": [{"name": "http", "port": 80}]}})
json.dump(doc, sys.stdout)
EOF
# hold_lock_name [CMD...]: takes the lock's name as another kipvs would (an abstract UNIX socket in the
# node's namespace, run through CMD), until $KT_DIR/holder.go appears; its pid in $KT_DIR/holder.pid, its
# job in $holder_job.
hold_lock_name() {
    rm -f "$KT_DIR/holder.pid" "$KT_DIR/holder.go"
    kt_node_exec "$@" python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind("\0kipvs-ipvs")
s.listen(64)
open(sys.argv[1] + "/holder.pid", "w").write(str(os.getpid()))
while not os.path.exists(sys.argv[1] + "/holder.go"):
    time.sleep(0.05)
' "$KT_DIR" &
    holder_job=$!
    for _ in $(seq 100); do [ -s "$KT_DIR/holder.pid" ] && break; sleep 0.1; done
}
hold_lock_name
before=$(table)
set +e
kipvs -f "$KT_DIR/locked.json" --lock-timeout 1 >"$KT_DIR/locked.out" 2>"$KT_DIR/locked.err"; rc=$?
set -e
cat "$KT_DIR/locked.err"
check "gives up after --lock-timeout with exit 2" [ "$rc" = 2 ]
check "names the holder's pid" grep -q "process $(cat "$KT_DIR/holder.pid") holds the lock" "$KT_DIR/locked.err"
check "says nothing was changed" grep -q 'nothing was changed' "$KT_DIR/locked.err"
check "and changed nothing" [ "$before" = "$(table)" ]
set +e
kipvs -f "$KT_DIR/locked.json" --dry-run >"$KT_DIR/dry.out" 2>&1; rc=$?
set -e
check "a dry run takes no lock: exit 0, the new Service in its plan" [ "$rc" = 0 ]
check "the dry run's plan has the new Service" grep -q '10.96.0.99' "$KT_DIR/dry.out"
# A file that does not parse is said at once: the lock is taken beside the parse, and not waited for then.
printf '{"kind": "List", "items": [\n' > "$KT_DIR/cut.json"
set +e
start=$(date +%s%N)
kipvs -f "$KT_DIR/cut.json" --lock-timeout 30 >"$KT_DIR/cut.out" 2>"$KT_DIR/cut.err"; rc=$?
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
set -e
cat "$KT_DIR/cut.err"
check "a file that does not parse, the lock held: exit 2 naming the file" \
    sh -c "[ $rc = 2 ] && grep -q 'cut.json' '$KT_DIR/cut.err' && grep -q 'nothing was changed' '$KT_DIR/cut.err'"
check "... at once, not after --lock-timeout (took ${took_ms} ms)" [ "$took_ms" -lt 15000 ]
# A run that waits: started while the lock is held, it must not write until the holder lets go.
kipvs -f "$KT_DIR/locked.json" --lock-timeout 30 >"$KT_DIR/waited.out" 2>&1 &
waiter=$!
sleep 2
check "a waiting run writes nothing while the lock is held" lacks_rule '-A -t 10.96.0.99:80'
check "it is still waiting" kill -0 "$waiter"
touch "$KT_DIR/holder.go"
wait "$holder_job" || true
set +e
wait "$waiter"; rc=$?
set -e
tail -3 "$KT_DIR/waited.out"
check "once the holder is gone it applies the input (exit 0)" [ "$rc" = 0 ]
check "the new Service is there" has_rule '-A -t 10.96.0.99:80 -s rr'

step "a process that cannot change the IPVS table (no CAP_NET_ADMIN) holding the lock's name is not waited for"
python3 - "$KT_DIR/locked.json" > "$KT_DIR/squatted.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["items"].append({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": "squatted"},
                     "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.98", "ports": [{"name": "http", "port": 80}]}})
json.dump(doc, sys.stdout)
EOF
# Any local user can bind an abstract name: here one as nobody, without capabilities.
chmod 0777 "$KT_DIR"
hold_lock_name setpriv --reuid=65534 --regid=65534 --clear-groups
start=$(date +%s)
set +e
kipvs -f "$KT_DIR/squatted.json" --lock-timeout 30 >"$KT_DIR/squatted.out" 2>"$KT_DIR/squatted.err"; rc=$?
set -e
took=$(( $(date +%s) - start ))
cat "$KT_DIR/squatted.err"
touch "$KT_DIR/holder.go"
wait "$holder_job" || true
check "it applies the input (exit 0) without waiting out --lock-timeout" test "$rc" = 0 -a "$took" -lt 20
check "it warns, naming the squatter's pid" grep -q "warning: process $(cat "$KT_DIR/holder.pid") (uid 65534) holds the lock" "$KT_DIR/squatted.err"
check "the new Service is there" has_rule '-A -t 10.96.0.98:80 -s rr'

step "externalTrafficPolicy Local on a node with no local endpoint: the cluster's endpoints, as kube-proxy's IPVS mode (kubernetes#97081)"
# Pods on such a node reach the LB IP through its local virtual server; without endpoints it would drop them.
# Late in the run: the connections it makes linger in TIME_WAIT (120 s), and a drain would wait for them.
# dests VS: "real server/weight ..." of one virtual server, from ipvsadm -Sn.
dests() { kt_ipvsadm -Sn | awk -v vs="$1" '$1 == "-a" && $3 == vs {print $5 "/" $NF}' | sort | tr '\n' ' '; }
kt_node_exec "$KIPVS" reconcile --node-name node-z --node-ip 10.0.2.254 -f "$KT_DIR/squatted.json" > "$KT_DIR/node-z.out"
check "192.0.2.10:80 has web-local's ready endpoints ($(dests 192.0.2.10:80))" \
    [ "$(dests 192.0.2.10:80)" = "10.0.1.1:8080/1 10.0.1.3:8080/1 " ]
check "so has NodePort 10.0.2.254:30081 ($(dests 10.0.2.254:30081))" \
    [ "$(dests 10.0.2.254:30081)" = "10.0.1.1:8080/1 10.0.1.3:8080/1 " ]
a=$(get 6 cli 192.0.2.10 80 | hist)
check "the LB IP answers from both ($a)" [ "$a" = "pod-1=3 pod-3=3 " ]
kipvs -f "$KT_DIR/squatted.json" > "$KT_DIR/node-a.out"
check "back on node-a, only its own endpoint carries traffic ($(dests 192.0.2.10:80); the other drains at weight 0)" \
    grep -qE '^10\.0\.1\.1:8080/1 (10\.0\.1\.3:8080/0 )?$' <<<"$(dests 192.0.2.10:80)"
a=$(get 4 cli 192.0.2.10 80 | hist)
check "the LB IP reaches node-a's endpoint only ($a)" [ "$a" = "pod-1=4 " ]

step "an input with no Service, or no EndpointSlice, that would empty the table is refused unless --allow-empty"
echo '{"apiVersion": "v1", "kind": "List", "items": []}' > "$KT_DIR/empty.json"
python3 - "$KT_DIR/squatted.json" > "$KT_DIR/noslices.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["items"] = [i for i in doc["items"] if i.get("kind") != "EndpointSlice"]
json.dump(doc, sys.stdout)
EOF
before=$(table)
set +e
kipvs -f "$KT_DIR/empty.json" >"$KT_DIR/empty.out" 2>"$KT_DIR/empty.err"; rc_empty=$?
kipvs -f "$KT_DIR/noslices.json" >"$KT_DIR/noslices.out" 2>"$KT_DIR/noslices.err"; rc_noslices=$?
kipvs -f "$KT_DIR/empty.json" --dry-run >"$KT_DIR/emptydry.out" 2>"$KT_DIR/emptydry.err"; rc_dry=$?
set -e
cat "$KT_DIR/empty.err" "$KT_DIR/noslices.err"
check "an empty List is refused (exit 2)" [ "$rc_empty" = 2 ]
check "it says why and how to apply it anyway" grep -q 'the input has no valid Service: it would delete all .*(--allow-empty applies it)' "$KT_DIR/empty.err"
check "Services without EndpointSlices are refused (exit 2)" [ "$rc_noslices" = 2 ]
check "it says how many real servers would go" grep -qE 'no valid EndpointSlice: it would remove all [0-9]+ real servers' "$KT_DIR/noslices.err"
check "and the table is unchanged" [ "$before" = "$(table)" ]
set +e
kipvs -f "$KT_DIR/empty.json" -o json >"$KT_DIR/emptyjson.out" 2>/dev/null; rc=$?
set -e
check "with -o json: exit 2, and stdout is one JSON object saying why" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exitCode"] == 2 and d["fatal"]["message"].startswith("the input has no valid Service"), d
' "$KT_DIR/emptyjson.out"
check "a dry run plans the deletions (exit 0)" [ "$rc_dry" = 0 ]
check "and warns that a real run would refuse" grep -q 'warning: a run without --dry-run would refuse' "$KT_DIR/emptydry.err"
check "the foreign service is still there" has_rule '-A -t 172.16.0.1:80 -s wlc'
set +e
kipvs -f "$KT_DIR/noslices.json" --allow-empty >"$KT_DIR/allowed.out" 2>&1; rc=$?
set -e
tail -2 "$KT_DIR/allowed.out"
check "--allow-empty applies it (exit 0)" [ "$rc" = 0 ]
check "the Services stay, without real servers" has_rule '-A -t 10.96.0.98:80 -s rr'
check "no real server carries traffic any more (those with connections drain at weight 0)" lacks_rule ' -w [1-9]'

echo
echo "e2e reconcile: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
