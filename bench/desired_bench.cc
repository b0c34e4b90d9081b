// Times parseFile + computeDesired on a cluster dump (bench/gen_cluster.py).
// usage: desired_bench FILE [REPEAT] [--sequential]   (--sequential: one parse thread)
//        desired_bench --dump FILE...   (canonical rendering of the Cluster and Desired: test/controller/cluster_dump.h)
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "controller/desired.h"
#include "controller/heap.h"
#include "controller/k8s.h"
#include "test/controller/cluster_dump.h"

namespace {

// CPU time of this process: wall time is noise on a shared machine.
double cpuMs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Minor page faults so far: fresh memory costs more than the parsing itself.
long faults() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  kipvs::growHeapInLargeSteps();
  using namespace kipvs;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [REPEAT] [--sequential] | --dump FILE...\n", argv[0]);
    return 2;
  }
  if (std::string(argv[1]) == "--dump") {
    std::string out = controller::testing::dumpAll(controller::parseFiles({argv + 2, argv + argc}));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  int repeat = argc > 2 ? std::atoi(argv[2]) : 3;
  controller::ParseOptions parseOptions;
  parseOptions.parallel = !(argc > 3 && std::string(argv[3]) == "--sequential");
  controller::NodeFacts node;
  node.nodeName = "node-00";
  node.zone = "zone-0";
  node.nodeIps.push_back(*ipvs::Address::parse("198.51.100.10"));
  for (int i = 0; i < repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpuMs();
    long f0 = faults();
    StatusOr<controller::Cluster> c = controller::parseFile(argv[1], parseOptions);
    if (!c) {
      std::fprintf(stderr, "%s\n", c.status().toString().c_str());
      return 1;
    }
    double parseMs = msSince(t0), parseCpu = cpuMs() - c0;
    long parseFaults = faults() - f0;
    auto t1 = std::chrono::steady_clock::now();
    double c1 = cpuMs();
    // computeDesired()'s steps, the first timed apart: a reconcile's writes
    // start after it, the second runs beside them.
    controller::DesiredBuilder builder(*c, node);
    controller::Desired d = builder.servers();
    double serversMs = msSince(t1);
    builder.fillAll(d);
    double desiredMs = msSince(t1), desiredCpu = cpuMs() - c1;
    long desiredFaults = faults() - f0 - parseFaults;
    std::printf(
        "services=%zu slices=%zu -> vs=%zu dests=%zu errors=%zu  parse %.1f ms (cpu %.1f, %ld faults)  desired %.1f ms "
        "(cpu %.1f, %ld faults; virtual servers %.1f ms)\n",
        c->services.size(), c->slices.size(), d.table.services.size(), d.table.destCount(), d.errors.size(), parseMs,
        parseCpu, parseFaults, desiredMs, desiredCpu, desiredFaults, serversMs);
  }
  return 0;
}
