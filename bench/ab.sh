#!/usr/bin/env bash
# A/B of whole reconciles between builds, in one boot of the IPVS kernel: for each round and each build, in
# a fresh network namespace, kipvs_program programs the benchmark table (the reference), then reconcile goes
# empty -> full, a no-op follows, and `kipvs dump` reads the result. Prints one line per command (wall time,
# CPU, peak RSS) and the per-round ratios; exits 1 if a reconcile's kernel writes are not as expected.
#
# For comparing a change against its parent quickly (~35 s per build and round at 10,000 x 10); the
# numbers that go into BENCHMARKS.md come from bench/run.sh.
#
# Usage: bench/ab.sh [--rounds N] [--services N] [--dests M] NAME=BUILD_DIR [NAME=BUILD_DIR...]
#   BUILD_DIR holds kipvs and bench/kipvs_program (a meson build directory, e.g. build or
#   build/bench-src/<sha>/build). bench/rusage_exec comes from build/.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/vm_common.sh
parse_args 2,12 "$@"

if [ -z "${BENCH_CLUSTER:-}" ]; then
    # Host side: check the builds, write the cluster, boot the kernel once and run this script inside.
    for b in "${builds[@]}"; do
        dir=${b#*=}
        for f in "$dir/kipvs" "$dir/bench/kipvs_program"; do
            [ -x "$f" ] || { echo "ab.sh: $f missing (build it first)" >&2; exit 2; }
        done
    done
    [ -x build/bench/rusage_exec ] || { echo "ab.sh: build/bench/rusage_exec missing (ninja -C build)" >&2; exit 2; }
    run_in_guest
fi

# Guest side (root, IPVS kernel).
work=$(mktemp -d)
cp "$BENCH_CLUSTER" "$work/cluster.json"   # tmpfs: the host's share is slow to read
rusage=build/bench/rusage_exec
ns=kipvs-ab
failed=0

# run LABEL CMD...: one timed command in the namespace; prints a line, leaves the wall time in $ms.
run() {
    local label=$1; shift
    settle
    local line
    line=$("$rusage" --label "$label" --stdout "$work/out" --netns "/run/netns/$ns" -- "$@" | tail -1)
    ms=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(int(r["wall_ms"]))' "$line")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-32s %7.0f ms  user %5.0f  sys %5.0f  rss %6.1f MB  rc %d" % (r["label"], r["wall_ms"], r["user_ms"], r["sys_ms"], r["maxrss_kb"] / 1024, r["rc"]))' "$line"
}
writes() { grep -o '"kernelWrites":[0-9]*' "$work/out" | cut -d: -f2; }

for round in $(seq 1 "$rounds"); do
    for b in "${builds[@]}"; do
        name=${b%%=*} dir=${b#*=}
        rec=("$dir/kipvs" reconcile -f "$work/cluster.json" --node-name n --node-ip 127.0.0.1 -o json)
        ip netns add "$ns"; ip -n "$ns" link set lo up
        run "$name program" "$dir/bench/kipvs_program" --services "$services" --dests "$dests" --no-dump
        program=$ms
        ip netns del "$ns"; ip netns add "$ns"; ip -n "$ns" link set lo up
        run "$name reconcile empty -> full" "${rec[@]}"; full=$ms
        [ "$(writes)" = $(( services * (dests + 1) )) ] || { echo "  unexpected kernel writes: $(writes)"; failed=1; }
        run "$name reconcile no-op" "${rec[@]}"; noop=$ms
        [ "$(writes)" = 0 ] || { echo "  unexpected kernel writes: $(writes)"; failed=1; }
        run "$name dump" "$dir/kipvs" dump --output ipvsadm; dump=$ms
        ip netns del "$ns"
        python3 -c 'import sys; p,f,n,d=map(float,sys.argv[1:5]); print("%-32s empty -> full / program %.2fx, no-op / dump %.2fx" % (sys.argv[5], f/p, n/d))' \
            "$program" "$full" "$noop" "$dump" "$name round $round"
    done
done
rm -rf "$work"
exit $failed
