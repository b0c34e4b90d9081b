#pragma once
// The one interface through which kipvs touches the kernel's IPVS table.
// NetlinkIpvsClient speaks generic netlink; FakeIpvsClient keeps the table in
// memory with the kernel's errno rules. The same conformance suite runs on both.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ipvs/model.h"
#include "netlink/status.h"

namespace kipvs::ipvs {

// One write to the kernel table.
struct Op {
  enum class Kind : uint8_t { kAddService, kUpdateService, kDeleteService, kAddDest, kUpdateDest, kDeleteDest };
  Kind kind = Kind::kAddService;
  // update-dest only: the dest is leaving (quiesced to weight 0 to drain), so
  // its absence (ENOENT) is the goal, not a reason to add it back.
  bool departing = false;
  ServiceKey service;
  // add/update service; out of line, as dest ops (nearly all of a plan) have
  // none: an op is 88 bytes, not 160 (10,000 x 10 empty -> full: 110,000 ops).
  DefaultBox<ServiceSpec> serviceSpec;
  DestKey dest;             // dest ops
  DestSpec destSpec;        // add/update dest

  static Op addService(const ServiceKey& k, const ServiceSpec& s) { return {Kind::kAddService, false, k, s, {}, {}}; }
  static Op updateService(const ServiceKey& k, const ServiceSpec& s) { return {Kind::kUpdateService, false, k, s, {}, {}}; }
  static Op deleteService(const ServiceKey& k) { return {Kind::kDeleteService, false, k, {}, {}, {}}; }
  static Op addDest(const ServiceKey& k, const DestKey& d, const DestSpec& s) { return {Kind::kAddDest, false, k, {}, d, s}; }
  static Op updateDest(const ServiceKey& k, const DestKey& d, const DestSpec& s) { return {Kind::kUpdateDest, false, k, {}, d, s}; }
  static Op deleteDest(const ServiceKey& k, const DestKey& d) { return {Kind::kDeleteDest, false, k, {}, d, {}}; }
  static Op quiesceDest(const ServiceKey& k, const DestKey& d, const DestSpec& s) {
    return {Kind::kUpdateDest, true, k, {}, d, s};
  }

  bool isServiceOp() const { return kind <= Kind::kDeleteService; }
  std::string toString() const;  // "add-service TCP 10.0.0.1:80 rr", "update-dest TCP 10.0.0.1:80 -> 10.1.0.1:80 weight 0"
};
const char* opKindName(Op::Kind k);  // "add-service", ...

class IpvsClient {
 public:
  virtual ~IpvsClient() = default;

  // The whole table, normalized.
  virtual StatusOr<Table> dumpTable() = 0;
  // One service and its destinations; nullopt if the kernel has no such service.
  virtual StatusOr<std::optional<ServiceState>> dumpService(const ServiceKey& key) = 0;

  // Sends many ops, in order, as few syscalls as the transport allows, and
  // returns one Status per op (same index). A failed op does not stop the
  // others: the caller groups ops so that dependent ones go in a later call.
  virtual std::vector<Status> apply(std::span<const Op> ops) = 0;

  virtual StatusOr<Timeouts> getTimeouts() = 0;
  virtual Status setTimeouts(const Timeouts& t) = 0;
  // Zero the counters of one service, or of all when key is nullopt.
  virtual Status zero(const std::optional<ServiceKey>& key) = 0;
  // Delete everything. Never used on a path that matters (see README: trash list).
  virtual Status flush() = 0;
  virtual StatusOr<Info> info() = 0;

  // Number of write ops (apply() entries, setTimeouts, zero, flush) sent so far.
  virtual uint64_t writeCount() const = 0;

  // Conveniences over apply() for single ops.
  Status addService(const ServiceKey& k, const ServiceSpec& s) { return applyOne(Op::addService(k, s)); }
  Status updateService(const ServiceKey& k, const ServiceSpec& s) { return applyOne(Op::updateService(k, s)); }
  Status deleteService(const ServiceKey& k) { return applyOne(Op::deleteService(k)); }
  Status addDest(const ServiceKey& k, const DestKey& d, const DestSpec& s) { return applyOne(Op::addDest(k, d, s)); }
  Status updateDest(const ServiceKey& k, const DestKey& d, const DestSpec& s) {
    return applyOne(Op::updateDest(k, d, s));
  }
  Status deleteDest(const ServiceKey& k, const DestKey& d) { return applyOne(Op::deleteDest(k, d)); }

 private:
  Status applyOne(const Op& op) {
    std::vector<Status> r = apply(std::span<const Op>(&op, 1));
    return r.empty() ? Status::error(Code::kInternal, "no result for op") : r.front();
  }
};

}  // namespace kipvs::ipvs
