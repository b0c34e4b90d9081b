#!/usr/bin/env bash
# The whole test suite: build, unit tests (plain, ASan+UBSan, TSan: reconcile runs host work and
# rendering in a second thread), then every kernel test on a real IPVS kernel
# (this host's if it has IPVS, else Debian's kernel in qemu: test/vm/). A kernel test that cannot reach IPVS
# fails; nothing here skips. Ends with one line "tests: N passed, N failed".
# Usage: scripts/test.sh            (run scripts/setup.sh first on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
passed=0
failed=0
failures=()
suite() {  # suite NAME CMD...: run one suite, count it
    local name=$1; shift
    echo
    echo "=== $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: passed ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

echo "=== build (debugoptimized, -Wall -Wextra)"
[ -f build/build.ninja ] || meson setup build
ninja -C build -j "$jobs"

echo "=== build (ASan + UBSan)"
[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
ninja -C build-asan -j "$jobs" test/kipvs-unit-tests

echo "=== build (TSan)"
[ -f build-tsan/build.ninja ] || meson setup build-tsan -Db_sanitize=thread -Dbuildtype=debug
ninja -C build-tsan -j "$jobs" test/kipvs-unit-tests test/kipvs-kernel-tests

suite "unit tests" build/test/kipvs-unit-tests --no-intro=true
suite "unit tests under ASan+UBSan" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 build-asan/test/kipvs-unit-tests --no-intro=true
suite "unit tests under TSan" env TSAN_OPTIONS=halt_on_error=1 build-tsan/test/kipvs-unit-tests --no-intro=true
suite "command line (usage and input errors, no kernel needed)" bash test/cli.sh

# One boot of the IPVS kernel runs every kernel suite (a boot costs ~10-15 s under TCG).
suite "kernel tests (real IPVS kernel)" test/vm/with-ipvs.sh --timeout 2400 -- bash scripts/kernel-tests.sh

echo
if [ "$failed" -gt 0 ]; then echo "failed suites: ${failures[*]}"; fi
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
