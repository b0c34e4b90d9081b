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

rounds=3 services=10000 dests=10
builds=()
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --dests) dests=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *=*) builds+=("$1"); shift ;;
        *) echo "ab.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

[ ${#builds[@]} -gt 0 ] || { echo "usage: bench/ab.sh [--rounds N] [--services N] [--dests M] NAME=BUILD_DIR..." >&2; exit 2; }

if [ -z "${AB_GUEST:-}" ]; then
    # Host side: check the builds, write the cluster, boot the kernel once and run this script inside.
    for b in "${builds[@]}"; do
        dir=${b#*=}
        for f in "$dir/kipvs" "$dir/bench/kipvs_program"; do
            [ -x "$f" ] || { echo "ab.sh: $f missing (build it first)" >&2; exit 2; }
        done
    done
    [ -x build/bench/rusage_exec ] || { echo "ab.sh: build/bench/rusage_exec missing (ninja -C build)" >&2; exit 2; }
    mkdir -p build/ab
    cluster=build/ab/cluster-$services-$dests.json
    [ -s "$cluster" ] || python3 bench/gen_cluster.py --bench-table "$services" "$dests" > "$cluster"
    exec test/vm/with-ipvs.sh --timeout 3600 -- env AB_GUEST=1 AB_CLUSTER="$cluster" bash bench/ab.sh --rounds "$rounds" \
        --services "$services" --dests "$dests" "${builds[@]}"
fi

# Guest side (root, IPVS kernel).
work=$(mktemp -d)
cp "$AB_CLUSTER" "$work/cluster.json"   # tmpfs: the host's share is slow to read
rusage=build/bench/rusage_exec
ns=kipvs-ab
failed=0

# Waits (up to 18 s) until the CPUs were at least 80 % idle over 0.3 s: a deleted namespace's table is torn
# down by a kworker after the fact.
settle() {
    local a b i j idle tot
    for i in $(seq 1 60); do
        read -r -a a < /proc/stat; sleep 0.3; read -r -a b < /proc/stat
        idle=$(( b[4] - a[4] )); tot=0
        for j in 1 2 3 4 5 6 7 8; do tot=$(( tot + b[j] - a[j] )); done
        if [ "$tot" -gt 0 ] && [ $(( idle * 100 / tot )) -ge 80 ]; then return 0; fi
    done
}
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
