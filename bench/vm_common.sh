# shellcheck shell=bash
# Shared by bench/ab.sh and bench/timeline.sh (sourced, not run).

# parse_args HELP_LINES "$@": --rounds N, --services N, --dests M and NAME=VALUE pairs into $rounds,
# $services, $dests and the array builds; -h prints lines HELP_LINES (sed range) of the calling script.
parse_args() {
    local help=$1; shift
    rounds=3 services=10000 dests=10
    builds=()
    while [ $# -gt 0 ]; do
        case $1 in
            --rounds) rounds=$2; shift 2 ;;
            --services) services=$2; shift 2 ;;
            --dests) dests=$2; shift 2 ;;
            -h|--help) sed -n "${help}p" "$0"; exit 0 ;;
            *=*) builds+=("$1"); shift ;;
            *) echo "$(basename "$0"): unknown argument $1" >&2; exit 2 ;;
        esac
    done
    if [ ${#builds[@]} -eq 0 ]; then
        echo "usage: bench/$(basename "$0") [--rounds N] [--services N] [--dests M] NAME=... [NAME=...]" >&2
        exit 2
    fi
}

# The benchmark cluster (kubectl JSON) for $services x $dests, generated once into build/ab/; prints its path.
cluster_file() {
    mkdir -p build/ab
    local cluster=build/ab/cluster-kubectl-$services-$dests.json
    [ -s "$cluster" ] || python3 bench/gen_cluster.py --bench-table "$services" "$dests" > "$cluster"
    echo "$cluster"
}

# Host side: boots the IPVS kernel once and runs the calling script inside it with the same options and the
# cluster file's path in BENCH_CLUSTER (the guest side runs when that is set). Does not return.
run_in_guest() {
    local cluster
    cluster=$(cluster_file)
    exec test/vm/with-ipvs.sh --timeout 3600 -- env BENCH_CLUSTER="$cluster" bash "bench/$(basename "$0")" \
        --rounds "$rounds" --services "$services" --dests "$dests" "${builds[@]}"
}

# Waits (up to 18 s) until the CPUs were at least 80 % idle over 0.3 s: a deleted namespace's table is torn
# down by a kworker after the fact.
settle() {
    local a b j idle tot
    for _ in $(seq 1 60); do
        read -r -a a < /proc/stat; sleep 0.3; read -r -a b < /proc/stat
        idle=$(( b[4] - a[4] )); tot=0
        for j in 1 2 3 4 5 6 7 8; do tot=$(( tot + b[j] - a[j] )); done
        if [ "$tot" -gt 0 ] && [ $(( idle * 100 / tot )) -ge 80 ]; then return 0; fi
    done
}
