#include "controller/apply.h"

#include <glog/logging.h>

#include <chrono>

namespace kipvs::controller {

using ipvs::Op;
using Kind = ipvs::Op::Kind;

bool isTransient(const Status& s) {
  if (s.code() == Code::kTimeout) return true;
  switch (s.errnum()) {
    case ENOBUFS:
    case EAGAIN:
    case EINTR:
    case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

namespace {

// A kernel answer that means the op's intent already holds, or a sibling op
// achieves it; nullopt if the answer is a real failure.
std::optional<Op> convergeRetry(const Op& op, const Status& s) {
  // Only the kernel's own answer: a socket or family failure carrying an
  // errno (ENOENT: family not found) says nothing about the table.
  if (s.code() != Code::kKernel) return std::nullopt;
  if (op.kind == Kind::kAddService && s.errnum() == EEXIST) return Op::updateService(op.service, op.serviceSpec);
  if (op.kind == Kind::kUpdateService && s.errnum() == ESRCH) return Op::addService(op.service, op.serviceSpec);
  if (op.kind == Kind::kAddDest && s.errnum() == EEXIST) return Op::updateDest(op.service, op.dest, op.destSpec);
  if (op.kind == Kind::kUpdateDest && s.errnum() == ENOENT) return Op::addDest(op.service, op.dest, op.destSpec);
  return std::nullopt;
}

bool alreadyDone(const Op& op, const Status& s) {
  if (s.code() != Code::kKernel) return false;
  if (op.kind == Kind::kDeleteDest) return s.errnum() == ENOENT || s.errnum() == ESRCH;
  if (op.kind == Kind::kDeleteService) return s.errnum() == ESRCH || s.errnum() == ENOENT;
  // A departing dest someone removed already: what draining was for.
  if (op.kind == Kind::kUpdateDest && op.departing) return s.errnum() == ENOENT;
  return false;
}

// Sends ops and records what became of them. The converge retries (an add
// that met EEXIST sent again as an update, ...) wait for flush(), so that a
// batch sent in several pieces makes the same writes in the same order as
// sent whole: each piece's ops, then every retry.
class BatchRunner {
 public:
  BatchRunner(ipvs::IpvsClient& client, ApplyReport& report) : client_(client), report_(report) {}

  // Per-op outcome of the last send(), retries folded in by flush().
  const std::vector<bool>& ok() const { return ok_; }

  void send(const std::vector<Op>& ops) {
    ++sends_;
    ok_.assign(ops.size(), false);
    if (ops.empty()) return;
    std::vector<Status> res = client_.apply(ops);
    report_.attempted += ops.size();
    for (size_t i = 0; i < ops.size(); ++i) {
      const Status& s = i < res.size() ? res[i] : Status::error(Code::kInternal, "no result");
      if (s.isOk() || alreadyDone(ops[i], s)) {
        ok_[i] = true;
        ++report_.succeeded;
        continue;
      }
      if (auto r = convergeRetry(ops[i], s)) {
        VLOG(1) << ops[i].toString() << ": " << s.toString() << ", retrying as " << ipvs::opKindName(r->kind);
        retries_.push_back({ops[i], std::move(*r), sends_, i});
        continue;
      }
      fail(ops[i], s);
    }
  }

  void flush() {
    if (retries_.empty()) return;
    std::vector<Op> again;
    again.reserve(retries_.size());
    for (const auto& r : retries_) again.push_back(r.retry);
    std::vector<Status> res = client_.apply(again);
    report_.attempted += again.size();
    for (size_t j = 0; j < retries_.size(); ++j) {
      const Retry& r = retries_[j];
      const Status& s = j < res.size() ? res[j] : Status::error(Code::kInternal, "no result");
      if (!s.isOk()) {
        fail(r.op, s);
        continue;
      }
      ++report_.succeeded;
      if (r.send == sends_) ok_[r.index] = true;
      // The service was not as the table read said (made or removed by
      // someone else since): its real servers were planned against that
      // read, so it is read and planned again.
      if (r.op.isServiceOp()) report_.stale.insert(r.op.service);
    }
    retries_.clear();
  }

 private:
  struct Retry {
    Op op;        // as planned
    Op retry;     // as sent again
    size_t send;  // which send() it came from, and where in it
    size_t index;
  };

  void fail(const Op& op, const Status& s) {
    if (!op.isServiceOp() && s.errnum() == ESRCH) report_.stale.insert(op.service);
    report_.failedServices.insert(op.service);
    report_.failures.push_back({op, s});
    LOG(WARNING) << "kernel refused " << op.toString() << ": " << s.toString();
  }

  ipvs::IpvsClient& client_;
  ApplyReport& report_;
  size_t sends_ = 0;
  std::vector<bool> ok_;
  std::vector<Retry> retries_;
};

// The three batches. Dest ops come from nextDests in chunks (false: no more);
// deletes is asked for once they are all sent.
template <typename NextDests, typename Deletes>
ApplyReport applyBatches(const std::vector<Op>& svcOps, const NextDests& nextDests, const Deletes& deletes,
                         ipvs::IpvsClient& client) {
  ApplyReport report;
  BatchRunner runner(client, report);

  // Batch 1: service adds and updates, retries included: the dest ops need
  // their outcome.
  runner.send(svcOps);
  runner.flush();
  std::set<ipvs::ServiceKey> blocked;
  for (size_t i = 0; i < svcOps.size(); ++i) {
    if (!runner.ok()[i]) blocked.insert(svcOps[i].service);
  }

  // Batch 2: dest ops of every service that now exists as wanted.
  std::vector<Op> chunk;
  while (nextDests(chunk)) {
    if (!blocked.empty()) {
      std::erase_if(chunk, [&](const Op& op) {
        if (!blocked.count(op.service)) return false;
        ++report.skippedDests[op.service];
        return true;
      });
    }
    runner.send(chunk);
    chunk.clear();
  }
  runner.flush();

  // Batch 3: stale services go last.
  runner.send(deletes());
  runner.flush();
  return report;
}

std::vector<Op> deleteOps(const Plan& plan) {
  std::vector<Op> out;
  for (const auto& sp : plan.services) {
    if (sp.action == ServicePlan::Action::kDelete) out.insert(out.end(), sp.ops.begin(), sp.ops.end());
  }
  return out;
}

}  // namespace

ApplyReport apply(const Plan& plan, ipvs::IpvsClient& client) {
  std::vector<Op> svcOps, destOps;
  for (const auto& sp : plan.services) {
    if (sp.action == ServicePlan::Action::kDelete) continue;
    for (const auto& op : sp.ops) (op.isServiceOp() ? svcOps : destOps).push_back(op);
  }
  bool given = false;
  return applyBatches(
      svcOps,
      [&](std::vector<Op>& chunk) {
        if (given) return false;
        chunk.swap(destOps);
        given = true;
        return true;
      },
      [&] { return deleteOps(plan); }, client);
}

void OpStream::push(std::vector<Op>&& chunk) {
  if (chunk.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    chunks_.push_back(std::move(chunk));
  }
  cv_.notify_one();
  chunk.clear();
}

void OpStream::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_one();
}

bool OpStream::pop(std::vector<Op>& chunk) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!closed_ && chunks_.empty()) {
    const auto start = std::chrono::steady_clock::now();
    cv_.wait(lock, [&] { return closed_ || !chunks_.empty(); });
    waited_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  }
  if (chunks_.empty()) return false;
  chunk = std::move(chunks_.front());
  chunks_.pop_front();
  return true;
}

ApplyReport applyStreamed(const std::vector<Op>& serviceOps, OpStream& destOps, const Plan& plan,
                          ipvs::IpvsClient& client) {
  return applyBatches(
      serviceOps, [&](std::vector<Op>& chunk) { return destOps.pop(chunk); }, [&] { return deleteOps(plan); },
      client);
}

}  // namespace kipvs::controller
