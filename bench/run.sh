#!/usr/bin/env bash
# Every benchmark in one VM boot: programming an empty IPVS table three ways (kipvs's client, ipvsadm -R,
# a one-request-one-ack libnl loop), dumping it (kipvs, ipvsadm -Sn), reconcile into an empty table and a
# no-op reconcile, the phases of reconcile; medians of R runs with ratios against the references and
# pass/fail against the targets. Plus bench/desired_bench natively. Run from the host:
#
#   bench/run.sh                        # 10,000 services x 10 dests, 3 runs (several minutes in the VM)
#   bench/run.sh --services 1000        # quick iteration
#   bench/run.sh --update-doc           # also replace the generated section of BENCHMARKS.md
#
# Options: --services N (10000) --dests M (10) --runs R (3) --timeout SECS (3000, the VM's)
#          --out DIR (build/bench-results/<time>) --max-wait SECS (600: wait for load <= --max-load)
#          --max-load L (1.5) --skip-restore (no ipvsadm -R) --update-doc --build (ninja the needed targets)
#          --build-dir DIR (build: where the binaries come from; they are copied to DIR/bin first, so a
#          rebuild during the run cannot change them mid-way)
#          --rev REV (build REV apart from the working tree: git archive into build/bench-src/<sha>, meson,
#          ninja; the numbers then belong to that commit. Adds bench/rusage_exec if REV predates it)
# Output: DIR/report.md (the markdown section), DIR/vm/results.jsonl (one JSON line per measurement),
#         DIR/native.txt, DIR/meta.json, DIR/load.txt (host load samples). Exit 1 when a correctness check failed
#         (a table not equal to the reference, unexpected kernel write counts); targets missed are reported, not fatal.
# Needs: the build (build/kipvs, build/bench/{kipvs_program,raw_netlink_loop,desired_bench,rusage_exec,dump_floor}),
#        ipvsadm, python3, test/vm/run.sh (or a host with IPVS and root: test/vm/with-ipvs.sh decides).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
me=bench/run.sh
services=10000 dests=10 runs=3 timeout_s=3000 max_wait=600 max_load=1.5
out='' skip_restore='' update_doc=0 build=0 bdir=build rev=
cmdline="bench/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        --services) services=$2; shift 2 ;;
        --dests) dests=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --max-wait) max_wait=$2; shift 2 ;;
        --max-load) max_load=$2; shift 2 ;;
        --skip-restore) skip_restore=--skip-restore; shift ;;
        --update-doc) update_doc=1; shift ;;
        --build) build=1; shift ;;
        --build-dir) bdir=$2; shift 2 ;;
        --rev) rev=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$me: unknown option $1" >&2; exit 2 ;;
    esac
done

bins="kipvs bench/kipvs_program bench/raw_netlink_loop bench/desired_bench bench/rusage_exec bench/dump_floor"
if [ -n "$rev" ]; then
    sha=$(git rev-parse --verify "$rev^{commit}")
    src=build/bench-src/$sha
    if [ ! -x "$src/build/kipvs" ]; then
        rm -rf "$src"; mkdir -p "$src"
        git archive "$sha" | tar -x -C "$src"
        if [ ! -f "$src/bench/rusage_exec.cc" ]; then
            cp bench/rusage_exec.cc "$src/bench/"
            echo "executable('rusage_exec', 'rusage_exec.cc')" >> "$src/bench/meson.build"
        fi
        echo "$sha" > "$src/REV"
        meson setup "$src/build" "$src" >/dev/null
    fi
    # shellcheck disable=SC2086
    ninja -C "$src/build" $bins
    bdir=$src/build
fi
if [ "$build" = 1 ]; then
    # shellcheck disable=SC2086
    ninja -C "$bdir" $bins
fi
for b in $bins; do
    [ -x "$bdir/$b" ] || { echo "$me: $bdir/$b missing: meson setup build && ninja -C build (or --build)" >&2; exit 2; }
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=${out:-build/bench-results/$stamp}
mkdir -p "$out"
out=$(cd "$out" && pwd)
case $out in /tmp/*|/run/*) echo "$me: --out under /tmp or /run is hidden from the VM" >&2; exit 2 ;; esac
echo "$me: results in $out" >&2

# Snapshot the binaries: others rebuild build/ while the VM runs (the guest reads them over 9p at each exec).
mkdir -p "$out/bin/bench"
for b in $bins; do cp "$bdir/$b" "$out/bin/$b"; done
# shellcheck disable=SC2086 # bins is a list of words
(cd "$out/bin" && sha256sum $bins) > "$out/bin/SHA256SUMS"
if [ -f "$bdir/../REV" ]; then
    src_rev="$(cut -c1-7 "$bdir/../REV") (clean export, $bdir)"
else
    src_rev="$(git rev-parse --short HEAD 2>/dev/null)$( [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || echo ' + uncommitted changes') (binaries built $(date -r "$bdir/kipvs" -u '+%H:%M UTC'))"
fi

load1() { cut -d' ' -f1 /proc/loadavg; }
# Timing hygiene: the host has 2 CPUs shared with builds and other VMs. Wait for quiet, up to --max-wait.
waited=0
while awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l > m) }'; do
    if [ "$waited" -ge "$max_wait" ]; then
        echo "$me: load $(load1) still above $max_load after ${waited}s: running anyway (noted in the report)" >&2
        break
    fi
    [ "$waited" -gt 0 ] || echo "$me: load $(load1) > $max_load: waiting (up to ${max_wait}s)" >&2
    sleep 15; waited=$((waited + 15))
done
load_before="$(cut -d' ' -f1-3 /proc/loadavg) (waited ${waited}s)"

# The cluster whose desired table is exactly the benchmark table (bench/gen_cluster.py --bench-table), in
# kubectl's layout; and the same one item per line, for one phase.
python3 bench/gen_cluster.py --bench-table "$services" "$dests" > "$out/cluster.json"
python3 bench/gen_cluster.py --bench-table --compact "$services" "$dests" > "$out/cluster-compact.json"

# Native: parse + desired, no kernel.
"$out/bin/bench/desired_bench" "$out/cluster.json" 3 | tee "$out/native.txt"

# Host load while the VM runs, every 10 s.
( while :; do echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 10; done ) > "$out/load.txt" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT

vmrc=0
KIPVS_VM_RESULTS="$out/vm" test/vm/with-ipvs.sh --timeout "$timeout_s" -- \
    python3 bench/suite.py vm --services "$services" --dests "$dests" --runs "$runs" \
        --cluster "$out/cluster.json" --compact-cluster "$out/cluster-compact.json" --out "$out/vm" \
        --build "$out/bin" $skip_restore \
    | tee "$out/vm-stdout.jsonl" || vmrc=${PIPESTATUS[0]}
kill "$sampler" 2>/dev/null || true
# In the VM the suite writes to $KIPVS_VM_OUT (the results share, which is $out/vm on the host); on a host with
# IPVS, to $out/vm directly. Either way the JSON lines were also printed.
[ -s "$out/vm/results.jsonl" ] || { mkdir -p "$out/vm"; cp "$out/vm-stdout.jsonl" "$out/vm/results.jsonl"; }

load_during=$(awk '{ s += $2; if ($2 > m) m = $2; n++ } END { if (n) printf "mean %.2f, max %.2f (1-min avg, %d samples)", s / n, m, n }' "$out/load.txt")
python3 - "$out/meta.json" <<EOF
import json, sys
json.dump({
    "command": "$cmdline",
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "git": "$src_rev",
    "host": "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)",
    "load_before": "$load_before",
    "load_during": "$load_during",
    "load_after": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=1)
EOF
python3 bench/suite.py report --vm-dir "$out/vm" --native "$out/native.txt" --meta "$out/meta.json" > "$out/report.md"

echo
cat "$out/report.md"
echo "raw JSON lines: $out/vm/results.jsonl" >&2

if [ "$update_doc" = 1 ]; then
    # Replace the generated part of BENCHMARKS.md (between the markers) with this report.
    python3 - "$out/report.md" <<'EOF'
import sys
begin, end = "<!-- bench/run.sh: begin generated -->", "<!-- bench/run.sh: end generated -->"
doc = open("BENCHMARKS.md").read()
if begin not in doc or end not in doc:
    sys.exit("BENCHMARKS.md has no generated-section markers")
report = open(sys.argv[1]).read().rstrip("\n")
head, rest = doc.split(begin, 1)
tail = rest.split(end, 1)[1]
open("BENCHMARKS.md", "w").write(head + begin + "\n" + report + "\n" + end + tail)
print("bench/run.sh: BENCHMARKS.md updated", file=sys.stderr)
EOF
fi
[ "$vmrc" = 0 ] || echo "$me: the suite exited $vmrc (correctness failures or a VM problem: see above)" >&2
exit "$vmrc"
