# shellcheck shell=bash
# Network topology helpers for kernel tests (source me; needs root, iproute2, busybox; python3 for UDP).
#
#   client netns ──veth──┐                       ┌──veth── pod netns (busybox httpd: "<pod>")
#   $KT-<cli>  eth0      │   $KT-node (IPVS)     │         $KT-<pod> eth0
#   10.0.2.x/24          └─ kcli  10.0.2.254/24  │         10.0.1.x/24, default via 10.0.1.254
#   fd00:2::x/64            kpods 10.0.1.254/24 ─┘         fd00:1::x/64, default via fd00:1::fffe
#                           kipvs0 (dummy): the service VIPs, like kube-proxy's kube-ipvs0
#
# Every namespace is named "$KT-<name>", the node is "$KT-node"; KT defaults to "kt<pid>" so tests running in
# parallel (in one VM or on one host) do not collide. Scratch files live in $KT_DIR (under /tmp, writable in
# the VM). Typical use:
#   . test/vm/lib.sh
#   kt_init; trap kt_teardown EXIT
#   kt_vip_add 10.0.0.10
#   kt_pod_add pod-a 10.0.1.1 fd00:1::1; kt_pod_add pod-b 10.0.1.2
#   kt_client_add cli 10.0.2.1
#   kt_ipvsadm -A -t 10.0.0.10:80 -s rr; kt_ipvsadm -a -t 10.0.0.10:80 -r 10.0.1.1:80 -m
#   kt_http_get cli 10.0.0.10 80            # -> "pod-a"
#   kt_http_get cli 10.0.0.10 80 /cgi-bin/whoami   # -> "pod-a 10.0.2.1" (the source address the pod saw)
# Pod servers: HTTP on $KT_HTTP_PORT (80) at start; kt_serve_http / kt_serve_udp add more ports.

KT_POD_GW4=${KT_POD_GW4:-10.0.1.254/24}
KT_POD_GW6=${KT_POD_GW6:-fd00:1::fffe/64}
KT_CLI_GW4=${KT_CLI_GW4:-10.0.2.254/24}
KT_CLI_GW6=${KT_CLI_GW6:-fd00:2::fffe/64}
KT_HTTP_PORT=${KT_HTTP_PORT:-80}

kt_ns() { echo "$KT-$1"; }                      # netns name of node/pod/client NAME
kt_exec() { local n=$1; shift; ip netns exec "$KT-$n" "$@"; }
kt_node_exec() { ip netns exec "$KT-node" "$@"; }
kt_ipvsadm() { ip netns exec "$KT-node" ipvsadm "$@"; }

# kt_netns_add NAME: a bare netns "$KT-NAME" with lo up. Bring lo up in any fresh netns used for IPVS: until
# the netns has a local address its local routing table does not exist, inet_addr_type() then calls every IPv4
# address "broadcast", and adding a real server fails with EINVAL (seen on 6.1).
kt_netns_add() {
    ip netns add "$KT-$1"
    ip -n "$KT-$1" link set lo up
}

# kt_init [PREFIX]: create the node netns with its bridges and the VIP dummy.
kt_init() {
    KT=${1:-${KT:-kt$$}}
    KT_DIR=${TMPDIR:-/tmp}/$KT
    rm -rf "$KT_DIR"
    mkdir -p "$KT_DIR"
    echo 0 > "$KT_DIR/nveth"
    local node=$KT-node
    kt_netns_add node
    ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$node" link add kipvs0 type dummy
    ip -n "$node" link set kipvs0 up
    local br gw4 gw6
    for br in kpods kcli; do
        if [ $br = kpods ]; then gw4=$KT_POD_GW4 gw6=$KT_POD_GW6; else gw4=$KT_CLI_GW4 gw6=$KT_CLI_GW6; fi
        ip -n "$node" link add $br type bridge
        ip -n "$node" link set $br up
        ip -n "$node" addr add "$gw4" dev $br
        ip -n "$node" addr add "$gw6" dev $br nodad   # no DAD: usable at once
    done
}

# kt_vip_add ADDR...: put service addresses on the node's dummy (v4 /32, v6 /128).
kt_vip_add() {
    local a
    for a in "$@"; do
        case $a in
            *:*) ip -n "$KT-node" addr add "$a/128" dev kipvs0 nodad ;;
            *) ip -n "$KT-node" addr add "$a/32" dev kipvs0 ;;
        esac
    done
}

# _kt_endpoint NAME BRIDGE GW4 GW6 IP4 [IP6]: netns with eth0 on the node's BRIDGE, default routes via it.
_kt_endpoint() {
    local name=$1 br=$2 gw4=${3%/*} gw6=${4%/*} ip4=$5 ip6=${6:-} ns=$KT-$1 n
    n=$(( $(cat "$KT_DIR/nveth") + 1 ))
    echo "$n" > "$KT_DIR/nveth"
    kt_netns_add "$name"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    # Create the pair inside the node netns so the host-side name (kvN) never clashes with other topologies.
    ip -n "$KT-node" link add "kv$n" type veth peer name eth0 netns "$ns"
    ip -n "$KT-node" link set "kv$n" master "$br" up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$ip4/${3#*/}" dev eth0
    ip -n "$ns" route add default via "$gw4"
    if [ -n "$ip6" ]; then
        ip -n "$ns" addr add "$ip6/${4#*/}" dev eth0 nodad
        ip -n "$ns" -6 route add default via "$gw6"
    fi
    echo "$name" >> "$KT_DIR/endpoints"
}

# kt_pod_add NAME IP4 [IP6]: a pod netns serving HTTP on $KT_HTTP_PORT: GET / -> "NAME",
# GET /cgi-bin/whoami -> "NAME <client address as the pod saw it>".
kt_pod_add() {
    _kt_endpoint "$1" kpods "$KT_POD_GW4" "$KT_POD_GW6" "$2" "${3:-}"
    local www=$KT_DIR/www-$1
    mkdir -p "$www/cgi-bin"
    echo "$1" > "$www/index.html"
    # busybox httpd listens on [::], so REMOTE_ADDR reads "[::ffff:10.0.2.1]" for v4 peers: print it plain.
    cat > "$www/cgi-bin/whoami" <<EOF_CGI
#!/bin/sh
a=\${REMOTE_ADDR#[}; a=\${a%]}; a=\${a#::ffff:}
printf 'Content-Type: text/plain\\r\\n\\r\\n%s %s\\n' '$1' "\$a"
EOF_CGI
    chmod 0755 "$www/cgi-bin/whoami"
    kt_serve_http "$1" "$KT_HTTP_PORT"
}

# kt_client_add NAME IP4 [IP6]: a client netns on the client bridge.
kt_client_add() { _kt_endpoint "$1" kcli "$KT_CLI_GW4" "$KT_CLI_GW6" "$2" "${3:-}"; }

# kt_serve_http POD PORT: another busybox httpd in POD (all addresses, v4 + v6) with the same content.
kt_serve_http() {
    # stdio to a log file: a server holding the test's stdout open would make the caller wait for EOF.
    # (a bare port binds [::] dual-stack, so v4 and v6 both work; disown: no "Killed" notice at teardown)
    ip netns exec "$KT-$1" busybox httpd -f -p "$2" -h "$KT_DIR/www-$1" </dev/null >>"$KT_DIR/$1.log" 2>&1 &
    echo $! >> "$KT_DIR/pids"
    disown $!
    kt_wait_listen "$1" "$2" tcp
}

# kt_serve_udp POD PORT: a UDP server in POD answering every datagram with "POD <client address>".
kt_serve_udp() {
    ip netns exec "$KT-$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)   # one socket for v4 and v6
s.bind(("::", int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    host = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
    s.sendto(("%s %s\n" % (sys.argv[1], host)).encode(), peer)
' "$1" "$2" </dev/null >>"$KT_DIR/$1.log" 2>&1 &
    echo $! >> "$KT_DIR/pids"
    disown $!
    kt_wait_listen "$1" "$2" udp
}

# kt_wait_listen NAME PORT [tcp|udp]: wait (up to ~10 s) until something listens on PORT in NAME's netns.
kt_wait_listen() {
    local flag=-t
    [ "${3:-tcp}" = udp ] && flag=-u
    for _ in $(seq 100); do
        [ -z "$(ip netns exec "$KT-$1" ss -Hln $flag "sport = :$2")" ] || return 0
        sleep 0.1
    done
    echo "kt_wait_listen: nothing listens on $1:$2/${3:-tcp}" >&2
    cat "$KT_DIR/$1.log" >&2 2>/dev/null || true
    return 1
}

_kt_hostport() { case $1 in *:*) echo "[$1]:$2" ;; *) echo "$1:$2" ;; esac; }

# kt_http_get FROM ADDR PORT [PATH]: HTTP GET from netns FROM ("node", a client or a pod); prints the body.
# (coreutils timeout, not wget -T: busybox 1.35's `wget -T` segfaults in Debian 12)
kt_http_get() {
    ip netns exec "$KT-$1" env -u http_proxy -u HTTP_PROXY timeout "${KT_TIMEOUT:-10}" \
        busybox wget -q -O - "http://$(_kt_hostport "$2" "$3")${4:-/}"
}

# kt_http_get_from FROM SRCPORT ADDR PORT [PATH]: as kt_http_get, from source port SRCPORT. A port below the
# ephemeral range, used once, gives a 5-tuple IPVS has never seen, so the scheduler places the request.
# With automatic ports the rr check once got 30 answers from 28 new connections in the kernel's counters:
# two requests followed connections IPVS still held instead of being scheduled.
kt_http_get_from() {
    ip netns exec "$KT-$1" timeout "${KT_TIMEOUT:-10}" python3 -c '
import socket, sys
addr, port, src, path, host = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.bind(("", src))
s.connect((addr, port))
s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
data = b"".join(iter(lambda: s.recv(65536), b""))  # to EOF: the server closes after its answer
head, _, body = data.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.") or head.split(b" ")[1] != b"200":
    sys.exit("kt_http_get_from: " + head.split(b"\r\n")[0].decode(errors="replace"))
sys.stdout.write(body.decode())
' "$3" "$4" "$2" "${5:-/}" "$(_kt_hostport "$3" "$4")"
}

# kt_udp_get FROM ADDR PORT: one datagram from a fresh socket (new source port, so a new IPVS connection).
kt_udp_get() {
    ip netns exec "$KT-$1" python3 -c '
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
sys.stdout.write(s.recv(2048).decode())
' "$2" "$3" "${KT_TIMEOUT:-10}"
}

# kt_teardown: kill every process in our namespaces, delete them, remove $KT_DIR. Safe to call twice.
kt_teardown() {
    [ -n "${KT:-}" ] || return 0
    local ns p
    for ns in $(ip netns list 2>/dev/null | awk -v p="$KT-" 'index($1, p) == 1 { print $1 }'); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    [ -n "${KT_DIR:-}" ] || return 0
    if [ -f "$KT_DIR/pids" ]; then
        for p in $(cat "$KT_DIR/pids"); do kill -9 "$p" 2>/dev/null || true; done
    fi
    rm -rf "$KT_DIR"
}
