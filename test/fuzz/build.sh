#!/bin/bash
# Builds and runs the parser's differential fuzzer (test/fuzz/parse_fuzz.cc).
#
#   test/fuzz/build.sh                 build build-fuzz/parse_fuzz and parse_fuzz_gen (ASan + UBSan + libFuzzer)
#   test/fuzz/build.sh seed            (re)make build-fuzz/seeds/ from test/fixtures + generated lists
#   test/fuzz/build.sh run [SECONDS] [extra libFuzzer flags...]
#                                      fuzz build-fuzz/corpus/ (seeded from seeds/), one worker,
#                                      findings in build-fuzz/findings/
#   test/fuzz/build.sh gen [SECONDS] [flags...]
#                                      fuzz with the generator (parse_fuzz_gen, corpus build-fuzz/corpus-gen/)
#   test/fuzz/build.sh cov             line coverage of the parser by corpus/, seeds/ and corpus-gen/
#                                      (clang source-based coverage, build-fuzz/cov/)
#   test/fuzz/build.sh tsan            the corpora once more under ThreadSanitizer (build-fuzz/tsan/;
#                                      without libFuzzer, whose coverage counters TSan reports as races)
#   test/fuzz/build.sh repro FILE...   run the given inputs once (KIPVS_FUZZ_VERBOSE=1 prints renderings,
#                                      KIPVS_FUZZ_SWEEP=64 tries 64 sets of knobs); past findings:
#                                      test/fuzz/build.sh repro test/fuzz/regressions/*
#   test/fuzz/build.sh repro-gen FILE...  the same for parse_fuzz_gen inputs (KIPVS_FUZZ_PRINT=1 prints the JSON)
#
# CXX overrides the compiler (clang++-14 by default); the objects are rebuilt
# when their source is newer.
set -euo pipefail

source "$(dirname "$0")/common.sh"
OUT=$ROOT/build-fuzz
SOURCES="controller/k8s.cc controller/item_builder.cc controller/yaml.cc netlink/status.cc"

build() {
  # shellcheck disable=SC2086
  compileObjects "$OUT" $SOURCES
  echo "link parse_fuzz parse_fuzz_gen"
  $CXX $CXXFLAGS $SAN -fsanitize=fuzzer "$ROOT/test/fuzz/parse_fuzz.cc" "${OBJS[@]}" -o "$OUT/parse_fuzz" -lyaml -lglog
  $CXX $CXXFLAGS $SAN -fsanitize=fuzzer -DKIPVS_FUZZ_GEN "$ROOT/test/fuzz/parse_fuzz.cc" "${OBJS[@]}" \
    -o "$OUT/parse_fuzz_gen" -lyaml -lglog
}

seed() {
  rm -rf "$OUT/seeds"
  mkdir -p "$OUT/seeds"
  find "$ROOT/test/fixtures" "$ROOT/examples" -name '*.json' -size -64k -exec cp -t "$OUT/seeds" {} + 2>/dev/null || true
  python3 "$ROOT/test/fuzz/gen_seeds.py" "$OUT/seeds"
}

run() {
  local secs=${1:-600}
  shift || true
  [[ -x $OUT/parse_fuzz ]] || build
  [[ -d $OUT/seeds ]] || seed
  runFuzzer "$OUT" parse_fuzz "$secs" corpus -max_len=16384 -timeout=20 -dict="$ROOT/test/fuzz/parse_fuzz.dict" \
    "$@" "$OUT/seeds"
}

gen() {
  local secs=${1:-600}
  shift || true
  [[ -x $OUT/parse_fuzz_gen ]] || build
  ARTIFACT_PREFIX=gen- runFuzzer "$OUT" parse_fuzz_gen "$secs" corpus-gen -max_len=2048 -len_control=0 -timeout=20 "$@"
}

# Objects and the two replay binaries (bytes, generator) with extra flags, in $OUT/$1.
replay_build() {
  local dir=$OUT/$1 src
  shift
  mkdir -p "$dir/obj"
  local flags="$CXXFLAGS -I/usr/lib/llvm-14/lib/clang/14.0.6/include $*"
  for src in $SOURCES; do
    $CXX $flags -c "$ROOT/$src" -o "$dir/obj/$(echo "$src" | tr / _).o"
  done
  $CXX $flags "$ROOT/test/fuzz/parse_fuzz.cc" "$ROOT/test/fuzz/replay_main.cc" "$dir"/obj/*.o -o "$dir/replay" -lyaml -lglog
  $CXX $flags -DKIPVS_FUZZ_GEN "$ROOT/test/fuzz/parse_fuzz.cc" "$ROOT/test/fuzz/replay_main.cc" "$dir"/obj/*.o \
    -o "$dir/replay_gen" -lyaml -lglog
}

cov() {
  replay_build cov -fprofile-instr-generate -fcoverage-mapping
  cd "$OUT/cov"
  rm -f ./*.profraw
  LLVM_PROFILE_FILE=bytes.profraw ./replay "$OUT/seeds" "$OUT/corpus"
  LLVM_PROFILE_FILE=gen.profraw ./replay_gen "$OUT/corpus-gen"
  llvm-profdata-14 merge -o all.profdata bytes.profraw gen.profraw
  llvm-cov-14 report ./replay -instr-profile=all.profdata "$ROOT/controller/k8s.cc" "$ROOT/controller/item_builder.cc" \
    "$ROOT/controller/json_scan.h"
  echo "uncovered lines: llvm-cov-14 show $OUT/cov/replay -instr-profile=$OUT/cov/all.profdata $ROOT/controller/k8s.cc"
}

tsan() {
  replay_build tsan -fsanitize=thread
  cd "$OUT/tsan"
  ./replay "$OUT/seeds" "$OUT/corpus"
  ./replay_gen "$OUT/corpus-gen"
}

case ${1:-build} in
  build) build ;;
  seed) seed ;;
  run) shift; run "$@" ;;
  gen) shift; gen "$@" ;;
  cov) cov ;;
  tsan) tsan ;;
  repro-gen) shift; [[ -x $OUT/parse_fuzz_gen ]] || build; "$OUT/parse_fuzz_gen" "$@" ;;
  repro) shift; [[ -x $OUT/parse_fuzz ]] || build; "$OUT/parse_fuzz" "$@" ;;
  *) echo "usage: $0 [build|seed|run [SECONDS] [flags]|gen [SECONDS] [flags]|cov|tsan|repro FILE...|repro-gen FILE...]" >&2; exit 2 ;;
esac
