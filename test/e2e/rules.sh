#!/usr/bin/env bash
# Every desired-state rule at once (test/fixtures/rules/cluster.json: externalIPs, per-slice port numbers,
# nil conditions, dual-stack, FQDN slices, internalTrafficPolicy Local, zone weights, scheduler flags,
# UDP/SCTP, topology hints, terminating fallback, LB ipMode Proxy and hostnames, ClientIP affinity, skipped
# and invalid Services), reconciled on a real IPVS kernel and read back with ipvsadm -Sn.
# Run on an IPVS kernel: test/vm/with-ipvs.sh -- bash test/e2e/rules.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
KIPVS=${KIPVS:-build/kipvs}
ns=kipvs-rules-$$
tmp=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
PASS=0 FAIL=0
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; PASS=$((PASS + 1)); else echo "FAIL: $what"; FAIL=$((FAIL + 1)); fi; }

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type dummy
ip -n "$ns" link set eth0 up
ip -n "$ns" addr add 10.0.2.254/24 dev eth0
ip -n "$ns" addr add fd00:2::fffe/64 dev eth0 nodad
run() { ip netns exec "$ns" "$KIPVS" reconcile -f test/fixtures/rules/cluster.json --node-name node-a --zone zone-a \
    --node-ip 10.0.2.254 --node-ip fd00:2::fffe "$@"; }

set +e
run >"$tmp/out" 2>"$tmp/err"; rc=$?
set -e
cat "$tmp/err"
check "exit 1: three invalid Services skipped, the rest applied" [ "$rc" = 1 ]
check "port out of range is named" grep -q 'rules/bad-port' "$tmp/err"
check "affinity timeout out of range is named" grep -q 'rules/bad-timeout' "$tmp/err"
check "the duplicate VIP:port is named" grep -q 'rules/dup-b' "$tmp/err"
ip netns exec "$ns" ipvsadm -Sn | sort > "$tmp/table"
sort test/fixtures/rules/expected.ipvsadm > "$tmp/expected"
check "ipvsadm -Sn equals test/fixtures/rules/expected.ipvsadm" diff "$tmp/expected" "$tmp/table"
check "VIPs local: ClusterIPs (v4+v6), externalIP, LB IP, a route each" \
    [ "$( (ip -n "$ns" -4 -o route show table local proto 241 dev kipvs0; ip -n "$ns" -6 -o route show table local proto 241 dev kipvs0) | grep -c '^local ')" = 14 ]

set +e
run -o json >"$tmp/again" 2>/dev/null
set -e
check "second run: zero kernel writes" grep -q '"kernelWrites":0' "$tmp/again"

# The same cluster as YAML manifests (one object per document): the same table, so nothing to write.
set +e
ip netns exec "$ns" "$KIPVS" reconcile -f test/fixtures/rules/cluster.yaml --node-name node-a --zone zone-a \
    --node-ip 10.0.2.254 --node-ip fd00:2::fffe -o json >"$tmp/yaml" 2>"$tmp/yamlerr"; rc=$?
set -e
check "YAML manifests: exit 1, the same three invalid Services named" \
    test "$rc" = 1 -a "$(grep -cE 'rules/(bad-port|bad-timeout|dup-b)' "$tmp/yamlerr")" = 3
check "YAML manifests: zero kernel writes" grep -q '"kernelWrites":0' "$tmp/yaml"
ip netns exec "$ns" ipvsadm -Sn | sort > "$tmp/table"
check "YAML manifests: ipvsadm -Sn still equals test/fixtures/rules/expected.ipvsadm" diff "$tmp/expected" "$tmp/table"
echo "rules: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
