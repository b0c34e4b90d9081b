#!/usr/bin/env bash
# Inside an IPVS kernel: a node network namespace, the example's pods as namespaces running HTTP servers that
# answer with their name, a client; then kipvs plans, applies, and the traffic split is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/vm/lib.sh

KT_POD_GW4=10.244.0.254/16       # the example's pod network
KT_CLI_GW4=198.51.100.10/24      # node-a's address (the NodePort address), clients on the same LAN
KT_HTTP_PORT=8080
kt_init demo
trap kt_teardown EXIT
for p in web-1:10.244.1.11 web-2:10.244.2.12 web-3:10.244.1.13 shop-1:10.244.1.21 shop-2:10.244.2.22; do
    kt_pod_add "${p%%:*}" "${p#*:}"
done
for p in web-1 web-2 web-3; do kt_serve_http "$p" 9090; done
kt_client_add client 198.51.100.50

k() { kt_node_exec build/kipvs "$@"; }
say() { echo; echo "### $*"; }
split() { local i; for i in $(seq "$4"); do kt_http_get client "$2" "$3"; done | sort | uniq -c | awk -v w="$1" '{printf "  %-8s %s: %d\n", w, $2, $1}'; }

say "kipvs reconcile --dry-run: the plan against an empty table (nothing is changed)"
k reconcile -f examples/cluster.json --node-name node-a --node-ip 198.51.100.10 --dry-run

say "kipvs reconcile: apply it"
k reconcile -f examples/cluster.json --node-name node-a --node-ip 198.51.100.10

say "ipvsadm -Ln (the kernel's own view)"
kt_ipvsadm -Ln

say "the VIPs: local routes through kipvs0 (ip route show table local proto 241)"
kt_node_exec ip route show table local proto 241

say "traffic: 30 requests to web's ClusterIP 10.96.12.34:80 (rr over 3 ready pods)"
split http 10.96.12.34 80 30
say "traffic: 9 requests to web's metrics port 10.96.12.34:9090"
split metrics 10.96.12.34 9090 9
say "traffic: 6 requests to shop's LoadBalancer IP 192.0.2.10 (externalTrafficPolicy Local: node-a's pod only)"
split lb 192.0.2.10 80 6
say "traffic: 6 requests to shop's NodePort 198.51.100.10:31080 (Local too)"
split nodeport 198.51.100.10 31080 6
say "traffic: 6 requests to shop's ClusterIP 10.96.200.10 (both pods: the policy is for external traffic)"
split cluster 10.96.200.10 80 6

say "kipvs dump: the live table with each real server's share of connections"
k dump

say "a second reconcile: nothing to do, zero kernel writes"
k reconcile -f examples/cluster.json --node-name node-a --node-ip 198.51.100.10

say "db (headless) and payments-api (ExternalName) got no virtual server; kubernetes (10.96.0.1) did"
