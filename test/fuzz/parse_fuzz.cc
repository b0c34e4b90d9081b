// Differential fuzzer for the JSON parser (controller/k8s.h), libFuzzer.
//
// Every input is parsed several ways that must agree exactly:
//   ref           fastItems=false, one thread (the DOM reader: the reference)
//   dflt          the default options (fast path; one thread below 1 MiB)
//   split         parallel, parallelMinBytes 0..63 (two threads on small inputs)
//   split-dom     the same with fastItems=false
//   stream        parseFile, mapFiles=false, chunkBytes 1..7 (times size/512):
//                 the ListStreamer over a Window read a few bytes at a time;
//                 parallel or not, fast or not
//   stream-split  streamed, two threads, chunkBytes 1..3 (times size/512): both
//                 threads slow alike, so the second one does real work
//   mapped        parseFile with the file mapped, parallel or not
// All succeed or all fail; on success the canonical renderings
// (test/controller/cluster_dump.h, errors included) are identical, on failure
// the Status messages are. The varying knobs come from a hash of the input,
// so a crash file reproduces exactly.
//
// Two binaries from this file: parse_fuzz takes the input as the JSON text
// (byte-level mutations, the dictionary); parse_fuzz_gen (-DKIPVS_FUZZ_GEN)
// takes it as choices for a generator of kubectl-like Lists (every field the
// parser reads, with wrong types, nulls, duplicates, odd key orders, escapes,
// odd numbers, indentation styles, the occasional syntax error), which
// reaches far more item-level cases than byte mutation does.
//
// Build and run: test/fuzz/build.sh (see there).
// Env: KIPVS_FUZZ_VERBOSE=1 prints each variant's rendering and ParseStats (for a
// reproducer); KIPVS_FUZZ_SWEEP=n runs each input with n sets of knobs
// (parse_fuzz); KIPVS_FUZZ_PRINT=1 prints the generated JSON (parse_fuzz_gen).

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <vector>

#include "test/fuzz/fuzz_util.h"
#include "controller/k8s.h"
#include "test/controller/cluster_dump.h"
#include "test/fuzz/gen_json.h"

// The parser's helper thread lowers its own priority (controller/helper_thread.h:
// setpriority(2) to nice 19). On a machine busy with other work that thread
// would hardly ever run, and the fuzzer would almost never see the second
// thread do any of the items. This binary's definition wins over libc's: the
// helper keeps its priority.
extern "C" int setpriority(int, id_t, int) { return 0; }

using namespace kipvs::controller;
using kipvs::StatusOr;

namespace {

bool verbose() {
  static const bool v = std::getenv("KIPVS_FUZZ_VERBOSE") != nullptr;
  return v;
}

// Verbose: what the parser did (that the variants take the paths they are meant to).
std::string statsOf(const ParseStats& s) {
  return "stats splitsUsed=" + std::to_string(s.splitsUsed) + " splitsDropped=" + std::to_string(s.splitsDropped) +
         " itemsByHelper=" + std::to_string(s.itemsByHelper) + " wholeDocument=" + std::to_string(s.wholeDocument) +
         " itemsByDom=" + std::to_string(s.itemsByDom) + " filesStreamed=" + std::to_string(s.filesStreamed) +
         " filesMapped=" + std::to_string(s.filesMapped) + "\n";
}

void check(const std::string& refName, const std::string& ref, const std::string& name, const std::string& got,
           std::string_view input, const ParseStats* stats = nullptr) {
  if (verbose()) std::fprintf(stderr, "--- %s\n%s", name.c_str(), got.c_str());
  if (verbose() && stats) std::fprintf(stderr, "%s", statsOf(*stats).c_str());
  if (got == ref) return;
  std::fprintf(stderr, "\n=== DIVERGENCE: %s vs %s\n--- input (%zu bytes)\n%.*s\n--- %s\n%s--- %s\n%s", name.c_str(),
               refName.c_str(), input.size(), static_cast<int>(input.size() > 4000 ? 4000 : input.size()),
               input.data(), refName.c_str(), ref.c_str(), name.c_str(), got.c_str());
  std::abort();
}

void differential(std::string_view text, uint64_t h) {
  static kipvs::fuzz::TempFile file("kipvs-parse-fuzz", ".json");
  const uint8_t* data = reinterpret_cast<const uint8_t*>(text.data());
  const size_t size = text.size();
  const std::string& source = file.path;  // every variant names the input alike

  ParseOptions refOpt;
  refOpt.parallel = false;
  refOpt.fastItems = false;
  const std::string ref = kipvs::fuzz::render(parseJson(text, source, refOpt));
  if (verbose()) std::fprintf(stderr, "--- ref\n%s", ref.c_str());

  ParseStats stats;
  auto viaJson = [&](const std::string& name, ParseOptions o) {
    stats = ParseStats();
    o.stats = &stats;
    check("ref", ref, name, kipvs::fuzz::render(parseJson(text, source, o)), text, &stats);
  };
  auto viaFile = [&](const std::string& name, ParseOptions o) {
    stats = ParseStats();
    o.stats = &stats;
    check("ref", ref, name, kipvs::fuzz::render(parseFile(source, o)), text, &stats);
  };

  viaJson("dflt", ParseOptions{});

  ParseOptions split;
  split.parallel = true;
  split.parallelMinBytes = h & 63;
  viaJson("split(min=" + std::to_string(split.parallelMinBytes) + ")", split);
  split.fastItems = false;
  viaJson("split-dom(min=" + std::to_string(split.parallelMinBytes) + ")", split);

  file.write(std::string_view(reinterpret_cast<const char*>(data), size));
  ParseOptions stream;
  stream.mapFiles = false;
  // An item the window's end cuts is read again with one chunk more: the
  // streamed parse costs (item size)^2 / (2 * chunkBytes). A few bytes on
  // small inputs, proportionally more on larger ones (the fuzzer's speed).
  const size_t chunkScale = std::max<size_t>(1, size / 512);
  stream.chunkBytes = (1 + ((h >> 8) % 7)) * chunkScale;
  stream.parallel = (h >> 16) & 1;
  stream.parallelMinBytes = (h >> 20) & 63;
  stream.fastItems = ((h >> 17) & 3) != 0;
  viaFile("stream(chunk=" + std::to_string(stream.chunkBytes) + ",parallel=" + std::to_string(stream.parallel) +
              ",min=" + std::to_string(stream.parallelMinBytes) + ",fast=" + std::to_string(stream.fastItems) + ")",
          stream);

  // Two threads over streamed windows: every read a syscall, both threads
  // slow alike, so the second one does much of its half even on small inputs
  // (over an Input it has hardly started when the first one gets there).
  ParseOptions streamSplit;
  streamSplit.mapFiles = false;
  streamSplit.chunkBytes = (1 + ((h >> 32) % 3)) * chunkScale;
  streamSplit.parallel = true;
  streamSplit.parallelMinBytes = (h >> 36) & 15;
  streamSplit.fastItems = ((h >> 40) & 3) != 0;
  viaFile("stream-split(chunk=" + std::to_string(streamSplit.chunkBytes) + ",min=" +
              std::to_string(streamSplit.parallelMinBytes) + ",fast=" + std::to_string(streamSplit.fastItems) + ")",
          streamSplit);

  ParseOptions mapped;
  mapped.parallel = (h >> 26) & 1;
  mapped.parallelMinBytes = (h >> 27) & 63;
  viaFile("mapped(parallel=" + std::to_string(mapped.parallel) + ",min=" + std::to_string(mapped.parallelMinBytes) +
              ")",
          mapped);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
#ifdef KIPVS_FUZZ_GEN
  FuzzedDataProvider fdp(data, size);
  const uint64_t knobs = fdp.ConsumeIntegral<uint64_t>();
  const std::string text = kipvs_fuzz::Gen(fdp).document();
  if (std::getenv("KIPVS_FUZZ_PRINT")) std::fprintf(stdout, "%s\n", text.c_str());
  differential(text, knobs);
#else
  // KIPVS_FUZZ_SWEEP=n: n sets of knobs per input (reproducers, hand-written cases).
  static const int sweep = std::getenv("KIPVS_FUZZ_SWEEP") ? std::atoi(std::getenv("KIPVS_FUZZ_SWEEP")) : 1;
  const uint64_t h = kipvs::fuzz::fnv1a(data, size);
  for (int i = 0; i < std::max(sweep, 1); ++i) {
    differential(std::string_view(reinterpret_cast<const char*>(data), size), h + i * 0x9E3779B97F4A7C15ULL);
  }
#endif
  return 0;
}
