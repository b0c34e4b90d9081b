#!/bin/bash
# Builds and runs the planner/apply property fuzzer (test/fuzz/plan_fuzz.cc).
#
#   test/fuzz/build_plan.sh                      build build-fuzz-plan/plan_fuzz (ASan + UBSan + libFuzzer)
#   test/fuzz/build_plan.sh run [SECONDS] [flags] fuzz build-fuzz-plan/corpus/, one worker,
#                                                findings in build-fuzz-plan/findings/
#   test/fuzz/build_plan.sh repro FILE...        run inputs once (KIPVS_FUZZ_VERBOSE=1 prints tables and plans)
#
# KIPVS_FUZZ_RAW=1 also loads actual entries kipvs/ipvsadm never write (see plan_fuzz.cc).
# CXX overrides the compiler (clang++-14 by default).
set -euo pipefail

source "$(dirname "$0")/common.sh"
OUT=$ROOT/build-fuzz-plan
SOURCES="ipvs/model.cc ipvs/op.cc ipvs/fake_client.cc controller/plan.cc controller/apply.cc netlink/status.cc"

build() {
  # shellcheck disable=SC2086
  compileObjects "$OUT" $SOURCES
  echo "link plan_fuzz"
  $CXX $CXXFLAGS $SAN -fsanitize=fuzzer "$ROOT/test/fuzz/plan_fuzz.cc" "${OBJS[@]}" -o "$OUT/plan_fuzz" -lglog
}

run() {
  local secs=${1:-600}
  shift || true
  [[ -x $OUT/plan_fuzz ]] || build
  runFuzzer "$OUT" plan_fuzz "$secs" corpus -max_len=512 -timeout=10 "$@"
}

case ${1:-build} in
  build) build ;;
  run) shift; run "$@" ;;
  repro) shift; [[ -x $OUT/plan_fuzz ]] || build; "$OUT/plan_fuzz" "$@" ;;
  *) echo "usage: $0 [build|run [SECONDS] [flags]|repro FILE...]" >&2; exit 2 ;;
esac
