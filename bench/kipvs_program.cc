// Programs the benchmark table (bench/table_gen.h) through
// NetlinkIpvsClient::apply in batches, then dumps it with dumpTable. Prints
// one JSON line per phase with timings (ms), counts and syscalls.
//
// Usage: kipvs_program [--services N] [--dests M] [--batch OPS] [--chunk OPS] [--unshare] [--flush] [--no-dump]
//                      [--dump-readers R]

#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/table_gen.h"
#include "controller/heap.h"
#include "ipvs/netlink_client.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  kipvs::growHeapInLargeSteps();  // as in kipvs itself, so the comparison is between the same processes
  using kipvs::bench::flagValue;
  const long services = flagValue(argc, argv, "--services", 1000);
  const long dests = flagValue(argc, argv, "--dests", 10);
  const long batch = flagValue(argc, argv, "--batch", 0);
  if (kipvs::bench::hasFlag(argc, argv, "--unshare") && !kipvs::bench::enterFreshNetns()) return 1;
  NetlinkIpvsClient::Options options;
  if (batch > 0) options.maxBatchOps = static_cast<size_t>(batch);
  options.dumpReaders = static_cast<size_t>(flagValue(argc, argv, "--dump-readers", 1));
  auto client = NetlinkIpvsClient::create(options);
  if (!client) {
    std::fprintf(stderr, "%s\n", client.status().toString().c_str());
    return 1;
  }
  NetlinkIpvsClient& c = **client;
  if (kipvs::bench::hasFlag(argc, argv, "--flush")) {
    if (Status s = c.flush(); !s.isOk()) std::fprintf(stderr, "%s\n", s.toString().c_str());
  }

  // Ops are generated and applied in chunks, as a caller streaming a plan
  // would: memory stays flat (a whole 110k-op vector is ~18 MB), while the
  // client still packs each chunk into maxBatchOps-sized sendmsg calls.
  const size_t chunk = static_cast<size_t>(flagValue(argc, argv, "--chunk", 8192));
  ServiceSpec spec;  // rr
  spec.netmask = 0xffffffffu;
  DestSpec dspec;    // masq, weight 1
  std::vector<Op> ops;
  ops.reserve(chunk + static_cast<size_t>(dests) + 1);
  double buildMs = 0, applyMs = 0;
  size_t total = 0;
  long errors = 0;
  const auto before = c.ioCounters();
  const auto cpu0 = kipvs::bench::cpuNow();
  auto flushOps = [&] {
    auto t = std::chrono::steady_clock::now();
    std::vector<Status> results = c.apply(ops);
    applyMs += msSince(t);
    for (const Status& s : results) {
      if (s.isOk()) continue;
      if (errors < 5) std::fprintf(stderr, "%s\n", s.toString().c_str());
      ++errors;
    }
    total += ops.size();
    ops.clear();
  };
  auto tb = std::chrono::steady_clock::now();
  for (long i = 0; i < services; ++i) {
    ServiceKey key = ServiceKey::tcp(Address::v4(kipvs::bench::vipFor(static_cast<uint32_t>(i))), kipvs::bench::kPort);
    ops.push_back(Op::addService(key, spec));
    for (long j = 0; j < dests; ++j) {
      DestKey dk{Address::v4(kipvs::bench::destFor(static_cast<uint32_t>(i), static_cast<uint32_t>(j),
                                                   static_cast<uint32_t>(dests))),
                 kipvs::bench::kPort};
      ops.push_back(Op::addDest(key, dk, dspec));
    }
    if (ops.size() >= chunk || i + 1 == services) {
      buildMs += msSince(tb);
      flushOps();
      tb = std::chrono::steady_clock::now();
    }
  }
  applyMs += buildMs;  // the apply phase covers generating the ops too
  const auto after = c.ioCounters();
  const auto cpu1 = kipvs::bench::cpuNow();
  std::printf(
      "{\"tool\":\"kipvs_program\",\"phase\":\"apply\",\"services\":%ld,\"dests\":%ld,\"ops\":%zu,\"errors\":%ld,"
      "\"ms\":%.1f,\"user_ms\":%.1f,\"sys_ms\":%.1f,\"build_ms\":%.1f,\"batch_ops\":%zu,\"sends\":%llu,"
      "\"receives\":%llu,\"polls\":%llu}\n",
      services, services * dests, total, errors, applyMs, cpu1.user - cpu0.user, cpu1.sys - cpu0.sys, buildMs,
      c.batchOps(),
      static_cast<unsigned long long>(after.sends - before.sends),
      static_cast<unsigned long long>(after.receives - before.receives),
      static_cast<unsigned long long>(after.polls - before.polls));
  std::fflush(stdout);

  int rc = errors == 0 ? 0 : 2;
  if (!kipvs::bench::hasFlag(argc, argv, "--no-dump")) {
    const auto b = c.ioCounters();
    const auto dcpu0 = kipvs::bench::cpuNow();
    auto t0 = std::chrono::steady_clock::now();
    auto table = c.dumpTable();
    const double dumpMs = msSince(t0);
    const auto dcpu1 = kipvs::bench::cpuNow();
    const auto a = c.ioCounters();
    if (!table) {
      std::fprintf(stderr, "%s\n", table.status().toString().c_str());
      return 1;
    }
    std::printf(
        "{\"tool\":\"kipvs_program\",\"phase\":\"dump\",\"services\":%zu,\"dests\":%zu,\"ms\":%.1f,"
        "\"user_ms\":%.1f,\"sys_ms\":%.1f,"
        "\"sends\":%llu,\"receives\":%llu,\"polls\":%llu}\n",
        table->services.size(), table->destCount(), dumpMs, dcpu1.user - dcpu0.user, dcpu1.sys - dcpu0.sys,
        static_cast<unsigned long long>(a.sends - b.sends),
        static_cast<unsigned long long>(a.receives - b.receives), static_cast<unsigned long long>(a.polls - b.polls));
    if (table->services.size() < static_cast<size_t>(services) ||
        table->destCount() < static_cast<size_t>(services * dests)) {
      rc = 3;
    }
  }
  return rc;
}
