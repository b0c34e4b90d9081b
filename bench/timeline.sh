#!/usr/bin/env bash
# Where a reconcile's time goes, phase by phase, for builds side by side in one boot of the IPVS kernel: for
# each round and each build, in a fresh network namespace, reconcile goes empty -> full, then a no-op
# follows, both with -v=1, whose timestamps give the phases. Prints one line per reconcile and, at the end,
# the median of each phase per build. Finer than bench/ab.sh (which times whole processes): a change to
# one phase shows there even when the VM's noise hides it in the whole run.
#
#   bench/timeline.sh [--rounds N] [--services N] [--dests M] NAME=KIPVS_BINARY [NAME=KIPVS_BINARY...]
#
# e.g. bench/timeline.sh --rounds 5 old=build/bench-src/<sha>/build/kipvs new=build/kipvs
# Phases (ms): empty -> full: exec (launch, `ip netns exec` included, to the start of the pass), parse (start of the pass to "parsed"), step1 (the virtual servers), first
# (to the first write), writes (all IPVS writes), after (the last write to the process's exit); no-op: parse, step1, read (start of the pass to the end
# of the table read, which runs beside the parse), plan (after the read), and total (the whole process,
# `ip netns exec` included).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/vm_common.sh
parse_args 2,14 "$@"

if [ -z "${BENCH_CLUSTER:-}" ]; then
    for b in "${builds[@]}"; do
        [ -x "${b#*=}" ] || { echo "timeline.sh: ${b#*=} missing (build it first)" >&2; exit 2; }
    done
    run_in_guest
fi

# Guest side (root, IPVS kernel).
work=$(mktemp -d)
cp "$BENCH_CLUSTER" "$work/cluster.json"   # tmpfs: the host's share is slow to read
ns=kipvs-timeline
results=$work/results.txt
: > "$results"

# phases NAME KIND STDERR START_NS END_NS: one line from the -v=1 log (glog's timestamps and `date` share
# the wall clock, so the stretches before the pass and after the writes are measured too).
phases() {
    python3 - "$@" <<'PY' | tee -a "$results"
import re, sys
name, kind, path = sys.argv[1], sys.argv[2], sys.argv[3]
# glog stamps the time of day (UTC in the guest)
launched, ended = int(sys.argv[4]) / 1e9 % 86400, int(sys.argv[5]) / 1e9 % 86400
total = "%d" % round((ended - launched) * 1000)
marks = [("start", "reading the live table"), ("read", "live table read"), ("parsed", "parsed "),
         ("desired", "desired: "), ("write", "writing "), ("written", "writes done"), ("planned", "planned ")]
t = {}
for line in open(path):
    m = re.match(r"[IWE]\d+ (\d+):(\d+):([\d.]+)\s+\d+ \S+\] (.*)", line)
    if not m:
        continue
    at = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    for key, prefix in marks:
        if m[4].startswith(prefix) and key not in t:
            t[key] = at
t["launched"], t["ended"] = launched, ended
def ms(a, b):
    return "%d" % round((t[b] - t[a]) * 1000) if a in t and b in t else "-"
if kind == "e->f":
    cols = [("exec", ms("launched", "start")), ("parse", ms("start", "parsed")), ("step1", ms("parsed", "desired")),
            ("first", ms("desired", "write")), ("writes", ms("write", "written")), ("after", ms("written", "ended"))]
else:
    cols = [("parse", ms("start", "parsed")), ("step1", ms("parsed", "desired")), ("read", ms("start", "read")),
            ("plan", ms("read", "planned"))]
print(name, kind, " ".join("%s %s" % c for c in cols), "total", total)
PY
}

for _ in $(seq 1 "$rounds"); do
    for b in "${builds[@]}"; do
        name=${b%%=*} bin=${b#*=}
        ip netns add "$ns"; ip -n "$ns" link set lo up
        for kind in "e->f" "no-op"; do
            settle
            s=$(date +%s%N)
            ip netns exec "$ns" "$bin" reconcile -f "$work/cluster.json" --node-name n --node-ip 127.0.0.1 \
                -o json -v=1 > "$work/out" 2> "$work/err" || true
            e=$(date +%s%N)
            grep -q '"exitCode":0' "$work/out" || { echo "timeline.sh: $name $kind did not converge" >&2; tail -3 "$work/err" >&2; }
            phases "$name" "$kind" "$work/err" "$s" "$e"
        done
        ip netns del "$ns"
    done
done

echo "== medians over $rounds rounds (ms)"
python3 - "$results" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    f = line.split()
    key = (f[0], f[1])
    if key not in order:
        order.append(key)
    for k, v in zip(f[2::2], f[3::2]):
        if v != "-":
            vals[key + (k,)].append(float(v))
for key in order:
    cols = [(k, statistics.median(vals[key + (k,)])) for k in dict.fromkeys(k for (n, kd, k) in vals if (n, kd) == key)]
    print(key[0], key[1], " ".join("%s %.0f" % c for c in cols))
PY
