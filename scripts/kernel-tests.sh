#!/usr/bin/env bash
# Every kernel suite, run on a kernel with IPVS (scripts/test.sh calls this through test/vm/with-ipvs.sh).
# Refuses to run anywhere else: a kernel test must never pass without a real IPVS kernel.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${KIPVS_REAL_KERNEL:-0}" != 1 ] || [ ! -e /proc/net/ip_vs ]; then
    echo "kernel-tests: no IPVS kernel here (run through test/vm/with-ipvs.sh); failing" >&2
    exit 1
fi
echo "kernel $(uname -r); IPVS $(head -1 /proc/net/ip_vs); in VM: ${KIPVS_IN_VM:-0}"

rc=0
run() {
    echo
    echo "--- $*"
    if ! "$@"; then echo "--- FAILED: $*"; rc=1; fi
}
# doctest passes a -tc filter that matches no test case: each pattern a run
# below relies on must match one at least (a renamed test would otherwise
# drop out of the run unnoticed).
matches() {
    local bin=$1; shift
    local p n
    for p in "$@"; do
        n=$("$bin" --count -tc="$p" | sed -n 's/.*passing the current filters: \([0-9]*\).*/\1/p')
        if [ "${n:-0}" -lt 1 ]; then echo "--- FAILED: no test case of $bin matches '$p'"; rc=1; fi
    done
}
matches build/test/kipvs-kernel-tests '*reloads ip_vs*'
matches build/test/kipvs-host-kernel-test '*'
[ -x build-tsan/test/kipvs-kernel-tests ] &&
    matches build-tsan/test/kipvs-kernel-tests '*full read gives*' '*beside another client*' '*page-sized*' '*dumpService*'

run bash test/vm/smoke.sh
run build/test/kipvs-kernel-tests --no-intro=true -tce='*reloads ip_vs*'
# The client's threads (a full read over several sockets) under TSan, on the real kernel.
if [ -x build-tsan/test/kipvs-kernel-tests ]; then
    run env TSAN_OPTIONS=halt_on_error=1 build-tsan/test/kipvs-kernel-tests --no-intro=true \
        -tc='*full read gives*,*beside another client*,*page-sized*,*dumpService*'
else
    echo "--- FAILED: build-tsan/test/kipvs-kernel-tests missing (scripts/test.sh builds it)"; rc=1
fi
run build/test/kipvs-host-kernel-test --require-dummy --require-ipvs
run bash test/e2e/rules.sh
run bash test/e2e/reconcile.sh
# Last: it unloads ip_vs and loads it again, which only the VM may have done to it.
if [ "${KIPVS_IN_VM:-0}" = 1 ]; then
    run build/test/kipvs-kernel-tests --no-intro=true -tc='*reloads ip_vs*'
else
    echo "--- not run here: the ip_vs reload case (it would unload the host's IPVS; the VM runs it)"
fi
exit $rc
