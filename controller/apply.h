#pragma once
// apply(Plan, IpvsClient&) -> ApplyReport. Writes go out in three batches
// (service adds/updates; dest ops of services that exist; service deletes) so
// that a failed service op skips only its own dest ops, and each batch is one
// pipelined send. Kernel answers that mean "already converged" are folded:
// add -> EEXIST retries as update, update-dest -> ENOENT retries as add,
// delete -> ENOENT/ESRCH is done.

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
  std::set<ipvs::ServiceKey> skippedDests;  // dest ops not sent because their service op failed
  std::set<ipvs::ServiceKey> stale;         // ESRCH on a dest op: the service vanished under us; re-dump

  bool ok() const { return failures.empty(); }
};

ApplyReport apply(const Plan& plan, ipvs::IpvsClient& client);

// Lost or refused for now (ENOBUFS, EAGAIN, EINTR, a timeout): re-dump and retry.
bool isTransient(const Status& s);

}  // namespace kipvs::controller
