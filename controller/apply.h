#pragma once
// apply(Plan, IpvsClient&) -> ApplyReport. Writes go out in three batches
// (service adds/updates; dest ops of services that exist; service deletes) so
// that a failed service op skips only its own dest ops, and each batch is one
// pipelined send (applyStreamed: the dest ops one per chunk). Kernel answers that mean "already converged" are folded:
// add -> EEXIST retries as update, update -> ESRCH/ENOENT retries as add
// (not for a departing dest: gone is what its drain was for), delete ->
// ENOENT/ESRCH is done. A service op retried that way marks its service stale:
// its real servers were planned against a read that no longer holds.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "controller/plan.h"
#include "ipvs/client.h"

namespace kipvs::controller {

struct OpFailure {
  ipvs::Op op;
  Status status;
};

struct ApplyReport {
  size_t attempted = 0;   // ops sent (retries included)
  size_t succeeded = 0;   // ops of the plan that took effect (or were already so)
  std::vector<OpFailure> failures;
  std::set<ipvs::ServiceKey> failedServices;
  // Dest ops not sent because their service op failed: how many, per service.
  std::map<ipvs::ServiceKey, size_t> skippedDests;
  // Not as the table read said: ESRCH on a dest op (the service vanished under
  // us), or a service add/update that met EEXIST/ESRCH. Re-dump and re-plan.
  std::set<ipvs::ServiceKey> stale;

  bool ok() const { return failures.empty(); }
};

ApplyReport apply(const Plan& plan, ipvs::IpvsClient& client);

// Dest ops handed from the thread that plans them to the one that applies
// them, in chunks, in plan order.
class OpStream {
 public:
  void push(std::vector<ipvs::Op>&& chunk);  // leaves chunk empty
  void close();                              // no more chunks
  // The next chunk; false once closed and drained. Waits for one.
  bool pop(std::vector<ipvs::Op>& chunk);
  // How long pop() waited for chunks, in all (the writes were ahead of the plan).
  std::chrono::microseconds waited() const { return waited_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<ipvs::Op>> chunks_;
  bool closed_ = false;
  std::chrono::microseconds waited_{0};  // pop()'s thread only
};

// apply() while the plan is still being made: batch 1 is serviceOps (the
// plan's service adds and updates, serviceOps()), batch 2 what destOps
// brings until it is closed, batch 3 the deletes of `plan`, which must be
// complete once destOps is closed. Same writes, in the same order, as
// apply(plan) of the finished plan when every chunk holds the dest ops of
// the services placed since the last one.
ApplyReport applyStreamed(const std::vector<ipvs::Op>& serviceOps, OpStream& destOps, const Plan& plan,
                          ipvs::IpvsClient& client);

// Lost or refused for now (ENOBUFS, EAGAIN, EINTR, a timeout): re-dump and retry.
bool isTransient(const Status& s);

}  // namespace kipvs::controller
