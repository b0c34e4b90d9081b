#!/bin/bash
# Builds and runs the YAML reader's differential fuzzer (test/fuzz/yaml_fuzz.cc).
#
#   test/fuzz/yaml_build.sh                 build build-fuzz-yaml/yaml_fuzz (ASan + UBSan + libFuzzer)
#   test/fuzz/yaml_build.sh seed            (re)make build-fuzz-yaml/seeds/ from test/fixtures, examples
#                                           (JSON and YAML) + generated Lists (gen_seeds.py)
#   test/fuzz/yaml_build.sh run [SECONDS] [extra libFuzzer flags...]
#                                           fuzz build-fuzz-yaml/corpus/ (seeded from seeds/), one
#                                           worker, findings in build-fuzz-yaml/findings/
#   test/fuzz/yaml_build.sh repro FILE...   run the given inputs once (KIPVS_FUZZ_VERBOSE=1 prints the
#                                           generated YAML and the renderings; KIPVS_YAML_FUZZ_STRICT=1
#                                           aborts on triaged differences too)
#
# CXX overrides the compiler (clang++-14 by default); objects are rebuilt when
# their source (or any controller/, netlink/, ipvs/ header) is newer.
set -euo pipefail

source "$(dirname "$0")/common.sh"
OUT=$ROOT/build-fuzz-yaml
SOURCES="controller/k8s.cc controller/item_builder.cc controller/yaml.cc netlink/status.cc"

build() {
  # shellcheck disable=SC2086
  compileObjects "$OUT" $SOURCES
  echo "link yaml_fuzz"
  $CXX $CXXFLAGS $SAN -fsanitize=fuzzer "$ROOT/test/fuzz/yaml_fuzz.cc" "${OBJS[@]}" -o "$OUT/yaml_fuzz" -lyaml -lglog
}

seed() {
  rm -rf "$OUT/seeds"
  mkdir -p "$OUT/seeds"
  find "$ROOT/test/fixtures" "$ROOT/examples" \( -name '*.json' -o -name '*.yaml' -o -name '*.yml' \) -size -64k \
    -exec cp --backup=numbered -t "$OUT/seeds" {} + 2>/dev/null || true
  python3 "$ROOT/test/fuzz/gen_seeds.py" "$OUT/seeds"
}

run() {
  local secs=${1:-600}
  shift || true
  [[ -x $OUT/yaml_fuzz ]] || build
  [[ -d $OUT/seeds ]] || seed
  runFuzzer "$OUT" yaml_fuzz "$secs" corpus -max_len=16384 -timeout=20 -dict="$ROOT/test/fuzz/yaml_fuzz.dict" \
    "$@" "$OUT/seeds"
}

case ${1:-build} in
  build) build ;;
  seed) seed ;;
  run) shift; run "$@" ;;
  repro) shift; [[ -x $OUT/yaml_fuzz ]] || build; "$OUT/yaml_fuzz" "$@" ;;
  *) echo "usage: $0 [build|seed|run [SECONDS] [flags]|repro FILE...]" >&2; exit 2 ;;
esac
