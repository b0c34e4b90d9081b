#pragma once
// One reconcile pass: Kubernetes objects -> desired table -> plan against the
// live table -> host (VIPs, sysctls) + kernel writes -> report. The kernel and
// the host come in as interfaces, so the whole pass runs against fakes in unit
// tests and against the real kernel in the VM.

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "controller/apply.h"
#include "controller/desired.h"
#include "controller/host.h"
#include "controller/plan.h"
#include "controller/sleeper.h"
#include "ipvs/client.h"

namespace kipvs::controller {

enum class DrainMode { kWait, kSkip };
enum class OutputFormat { kText, kJson };

struct ReconcileOptions {
  NodeFacts node;
  bool nodeIpsFromHost = true;     // --node-ip not given: ask the host
  std::string dummyInterface = "kipvs0";
  VipMode vipMode = VipMode::kRoute;  // how VIPs are made local (host.h)
  bool dryRun = false;
  bool manageSysctls = true;
  DrainMode drain = DrainMode::kSkip;
  std::chrono::milliseconds drainTimeout{std::chrono::seconds(300)};
  std::chrono::milliseconds drainPoll{std::chrono::seconds(1)};
  OutputFormat output = OutputFormat::kText;
  // An input with no Service at all, or with Services but no EndpointSlice at
  // all, would take every virtual server (or every real server) kipvs owns
  // out of the table. That is what a failed or partial `kubectl get` looks
  // like (an RBAC error on one resource, an empty List), so such an input is
  // refused (fatal, nothing written; a dry run plans it and warns) unless
  // this is set (--allow-empty).
  bool allowEmpty = false;
};

struct ReconcileResult {
  Plan plan;                          // the first plan (what --dry-run prints)
  ApplyReport report;                 // all apply passes, merged
  std::vector<ObjectError> objectErrors;
  std::vector<std::string> hostChanges;  // VIPs bound/unbound, sysctls set
  std::vector<Status> hostErrors;
  size_t stillDraining = 0;           // left at weight 0 when we stopped
  size_t plannedWrites = 0;           // writes planned over all passes (drain passes included)
  uint64_t kernelWrites = 0;          // write requests the client sent to the kernel during this pass
  Status fatal;                       // set when nothing could be done (kernel unreachable, ...)
  // The pass's inputs to the plan, handed to the caller (a one-shot run
  // exits without freeing ~100 MB of maps at 10,000 Services; a long-running
  // one can keep them). Empty when the pass stopped early (fatal).
  Desired desired;
  ipvs::Table observed;               // the live table as first read, before any write

  // 0: converged; 1: some objects or ops failed (the rest applied); 2: fatal.
  int exitCode() const;
};

// Gives the first read of the live table; nullptr means client.dumpTable().
// kipvs reconcile hands in the dump it started while the input parsed: the
// pass computes the desired state and reads the host before it waits for it,
// and uses `client` only after.
using TableSource = std::function<StatusOr<ipvs::Table>()>;
// Whether firstRead would answer at once. Until it would, the pass works
// out real servers on its own thread rather than wait.
using TableReady = std::function<bool()>;

// Run once on the pass's own thread when it has only the kernel writes left
// to wait for (the plan made and written out), while they go on: kipvs
// reconcile unmaps its input there, off the way to the first write. Not run
// by a dry run, nor when the writes had no thread of their own.
using IdleWork = std::function<void()>;

// The plan and summary go to `out`; every error, named, also goes to `err`.
ReconcileResult reconcile(const Cluster& cluster, const ReconcileOptions& opts, ipvs::IpvsClient& client,
                          HostNetwork& host, std::ostream& out, std::ostream& err, const Sleeper& sleep,
                          const TableSource& firstRead = nullptr, const TableReady& firstReadReady = nullptr,
                          const IdleWork& whileWriting = nullptr);

}  // namespace kipvs::controller
