// Times the renderers on a cluster dump (bench/gen_cluster.py), in process:
// the plan `kipvs reconcile -o json|text` prints into an empty table, a
// "mixed" plan against a perturbed copy of the table (updates, drains,
// deletes, foreign services), and the table renderers.
// usage: render_bench FILE [REPEAT] [--out DIR] [--only PREFIX]
//   --out DIR: also write every output there, for cmp; --only PREFIX: only those outputs (plan, plan.json, ...)
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "controller/desired.h"
#include "controller/k8s.h"
#include "controller/plan.h"
#include "controller/render.h"

namespace {

using namespace kipvs;

// CPU time of this process: wall time is noise on a shared machine.
double cpuMs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// The desired table with every third service's scheduler changed, some dests
// reweighted, departing dests with and without connections, a stale service
// of ours and a foreign one: a plan with every op kind.
ipvs::Table perturb(const ipvs::Table& desired, controller::Ownership& own) {
  ipvs::Table t = desired;
  size_t i = 0;
  for (auto& [k, s] : t.services) {
    if (i % 3 == 0) s.spec.scheduler = "wlc";
    size_t j = 0;
    for (auto& [dk, d] : s.dests) {
      if ((i + j) % 5 == 0) d.spec.weight += 1;
      ++j;
    }
    ipvs::DestKey gone{ipvs::Address::v4(0xC0A80000u + static_cast<uint32_t>(i % 60000)), 9999};
    s.dests[gone].counters.activeConns = static_cast<uint32_t>(i % 2);  // half drain, half are deleted
    ++i;
  }
  auto stale = ipvs::ServiceKey::tcp(ipvs::Address::v4(0x0A600000u - 1), 80);
  t.services[stale].spec.scheduler = "rr";
  own.vips.insert(stale.address);
  t.services[ipvs::ServiceKey::tcp(ipvs::Address::v4(0xCB007107u), 443)].spec.scheduler = "rr";  // foreign
  return t;
}

struct Case {
  std::string name;
  std::function<void(std::ostream&)> render;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto option = [&](const char* name) {
    std::string v;
    if (auto it = std::find(args.begin(), args.end(), name); it != args.end() && it + 1 != args.end()) {
      v = *(it + 1);
      args.erase(it, it + 2);
    }
    return v;
  };
  const std::string outDir = option("--out");
  const std::string only = option("--only");
  if (args.empty()) {
    std::fprintf(stderr, "usage: %s FILE [REPEAT] [--out DIR] [--only PREFIX]\n", argv[0]);
    return 2;
  }
  const int repeat = args.size() > 1 ? std::max(1, std::atoi(args[1].c_str())) : 5;

  StatusOr<controller::Cluster> c = controller::parseFile(args[0]);
  if (!c) {
    std::fprintf(stderr, "%s\n", c.status().toString().c_str());
    return 1;
  }
  controller::NodeFacts node;
  node.nodeName = "node-00";
  node.zone = "zone-0";
  node.nodeIps.push_back(*ipvs::Address::parse("198.51.100.10"));
  const controller::Desired desired = controller::computeDesired(*c, node);

  // As reconcile builds it.
  controller::Ownership own;
  own.vips.insert(desired.vips.begin(), desired.vips.end());
  own.nodeIps.insert(node.nodeIps.begin(), node.nodeIps.end());
  const ipvs::Table empty;
  const controller::Plan fresh = controller::plan(desired.table, empty, own);
  const ipvs::Table actual = perturb(desired.table, own);
  const controller::Plan mixed = controller::plan(desired.table, actual, own);
  const controller::PlanContext freshCtx{&desired, &empty};
  const controller::PlanContext mixedCtx{&desired, &actual};
  std::printf("vs=%zu dests=%zu  fresh plan: %zu ops  mixed plan: %zu ops, %zu draining, %zu left alone\n",
              desired.table.services.size(), desired.table.destCount(), fresh.opCount(), mixed.opCount(),
              mixed.drainingCount(), mixed.leftAlone.size());

  const std::vector<Case> cases = {
      {"plan.json", [&](std::ostream& o) { controller::renderPlanJson(fresh, freshCtx, o); }},
      {"plan.txt", [&](std::ostream& o) { controller::renderPlanText(fresh, freshCtx, o); }},
      {"mixed.json", [&](std::ostream& o) { controller::renderPlanJson(mixed, mixedCtx, o); }},
      {"mixed.txt", [&](std::ostream& o) { controller::renderPlanText(mixed, mixedCtx, o); }},
      {"table.json", [&](std::ostream& o) { controller::renderTableJson(actual, o); }},
      {"table.txt", [&](std::ostream& o) { controller::renderTableText(actual, o); }},
      {"table.ipvsadm", [&](std::ostream& o) { controller::renderIpvsadmRules(actual, o); }},
  };

  std::ofstream devNull("/dev/null");
  std::printf("%-14s %10s %16s %16s\n", "output", "bytes", "ostringstream ms", "/dev/null ms");
  for (const auto& cs : cases) {
    if (cs.name.rfind(only, 0) != 0) continue;
    std::vector<double> mem, null;
    size_t bytes = 0;
    for (int r = 0; r < repeat; ++r) {
      std::ostringstream o;
      double t0 = cpuMs();
      cs.render(o);
      mem.push_back(cpuMs() - t0);
      bytes = o.str().size();
      t0 = cpuMs();
      cs.render(devNull);
      devNull.flush();
      null.push_back(cpuMs() - t0);
    }
    std::sort(mem.begin(), mem.end());
    std::sort(null.begin(), null.end());
    // min / median: the minimum is the least disturbed by other load.
    std::printf("%-14s %10zu %7.1f /%7.1f %7.1f /%7.1f\n", cs.name.c_str(), bytes, mem.front(), mem[mem.size() / 2],
                null.front(), null[null.size() / 2]);
    if (!outDir.empty()) {
      std::ofstream f(outDir + "/" + cs.name, std::ios::binary);
      cs.render(f);
    }
  }
  return 0;
}
