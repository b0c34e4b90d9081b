# Sourced by the fuzz scripts (build.sh, build_plan.sh, yaml_build.sh): the
# compiler and flags, and the objects of the project's sources they link.
# CXX overrides the compiler (clang++-14 by default).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CXX=${CXX:-clang++-14}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize-ignorelist=$ROOT/test/fuzz/ubsan_ignore.txt"
CXXFLAGS="-std=c++20 -O1 -g -fno-omit-frame-pointer -I$ROOT -I/usr/include/libnl3 -D_FILE_OFFSET_BITS=64 -pthread"

# compileObjects OUT SRC...: each source into OUT/obj/ (instrumented for
# libFuzzer), rebuilt when it or any controller/, netlink/, ipvs/ header is
# newer, or the flags changed; the objects' paths in OBJS.
compileObjects() {
  local out=$1 src obj
  shift
  mkdir -p "$out/obj"
  # Objects built with other flags (a -D that changes a header's code) go.
  local flags="$CXX $CXXFLAGS $SAN"
  if [[ $(cat "$out/obj/flags" 2>/dev/null) != "$flags" ]]; then
    rm -f "$out"/obj/*.o
    echo "$flags" > "$out/obj/flags"
  fi
  OBJS=()
  for src in "$@"; do
    obj=$out/obj/$(echo "$src" | tr / _).o
    if [[ ! -f $obj || $ROOT/$src -nt $obj ]] ||
       [[ -n $(find "$ROOT/controller" "$ROOT/netlink" "$ROOT/ipvs" -name '*.h' -newer "$obj" 2>/dev/null | head -1) ]]; then
      echo "compile $src"
      $CXX $CXXFLAGS $SAN -fsanitize=fuzzer-no-link -c "$ROOT/$src" -o "$obj"
    fi
    OBJS+=("$obj")
  done
}

# runFuzzer OUT BIN SECS CORPUS ARGS...: OUT/BIN (libFuzzer) for SECS seconds,
# adding to OUT/CORPUS (created), its findings in OUT/findings/ (prefixed
# with ARTIFACT_PREFIX, if set). ARGS: the fuzzer's own flags and further
# corpora to read. One process, one worker: the machine is shared.
runFuzzer() {
  local out=$1 bin=$2 secs=$3 corpus=$4
  shift 4
  mkdir -p "$out/$corpus" "$out/findings"
  cd "$out"
  "./$bin" -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$out/findings/${ARTIFACT_PREFIX:-}" \
    -print_final_stats=1 "$out/$corpus" "$@"  # the first corpus is where libFuzzer adds inputs
}
