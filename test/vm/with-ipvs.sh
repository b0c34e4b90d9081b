#!/usr/bin/env bash
# Run CMD on a kernel with IPVS: directly if this host has IPVS and we are root, else inside the qemu VM.
# Usage: test/vm/with-ipvs.sh [--timeout SECS] -- CMD [ARGS...]
# The command sees KIPVS_REAL_KERNEL=1 either way, and KIPVS_IN_VM=1 (+ KIPVS_VM_OUT) in the VM.
# KIPVS_FORCE_VM=1 skips the host check.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 [--timeout SECS] -- CMD [ARGS...]" >&2; exit 2; }
timeout_s=''
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || usage

host_has_ipvs() {
    [ "$(id -u)" = 0 ] || return 1
    # /proc/net/ip_vs appears once ip_vs is loaded (or built in); modprobe fails quietly without modules.
    [ -e /proc/net/ip_vs ] || modprobe -q ip_vs 2>/dev/null || true
    [ -e /proc/net/ip_vs ]
}

export KIPVS_REAL_KERNEL=1
if [ "${KIPVS_FORCE_VM:-0}" != 1 ] && host_has_ipvs; then
    if [ -n "$timeout_s" ]; then exec timeout -k 10 "$timeout_s" "$@"; fi
    exec "$@"
fi
exec "$here/run.sh" ${timeout_s:+--timeout "$timeout_s"} -- "$@"
