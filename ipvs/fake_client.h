#pragma once
// An in-memory IPVS table that answers like the kernel (ip_vs_ctl.c): the
// same errnos for the same mistakes, HASHED set in what it stores, an empty
// destination dump for an unknown service. Tests inject faults and read the
// write counter; the conformance suite keeps it honest against the kernel.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ipvs/client.h"

namespace kipvs::ipvs {

class FakeIpvsClient : public IpvsClient {
 public:
  FakeIpvsClient();

  StatusOr<Table> dumpTable() override;
  StatusOr<std::optional<ServiceState>> dumpService(const ServiceKey& key) override;
  std::vector<Status> apply(std::span<const Op> ops) override;
  StatusOr<Timeouts> getTimeouts() override;
  Status setTimeouts(const Timeouts& t) override;
  Status zero(const std::optional<ServiceKey>& key) override;
  Status flush() override;
  StatusOr<Info> info() override;
  uint64_t writeCount() const override { return writes_; }

  // --- test controls ---
  // The next op naming this service (service or dest op) fails with errnum.
  void failNext(const ServiceKey& key, int errnum) { faults_[key].push_back({errnum, false}); }
  // The next op on key takes effect, but its answer is errnum (an ack lost to
  // ENOBUFS, say): the caller must read the table to know.
  void loseAnswerNext(const ServiceKey& key, int errnum) { faults_[key].push_back({errnum, true}); }
  // Every following dump fails with errnum until cleared (errnum 0).
  void failDumps(int errnum) { dumpFault_ = errnum; }
  // Schedulers "loaded" in this kernel; an unknown one fails with ENOENT.
  void setSchedulers(std::set<std::string> names) { schedulers_ = std::move(names); }
  // Simulate traffic: connection counters on a destination.
  Status setCounters(const ServiceKey& key, const DestKey& dest, const DestCounters& c);
  // Raw stored flags (HASHED included), as the kernel would dump them.
  std::optional<uint32_t> rawFlags(const ServiceKey& key) const;
  size_t serviceCount() const { return table_.services.size(); }

 private:
  // The kernel's limits the fake holds ops to (ip_vs_ctl.c).
  static constexpr size_t kSchedNameMax = 16;  // IP_VS_SCHEDNAME_MAXLEN, the NUL included
  static constexpr size_t kPeNameMax = 16;     // IP_VS_PENAME_MAXLEN, the NUL not included (its policy)
  static constexpr int kHz = 250;              // CONFIG_HZ of Debian's amd64 kernels
  Status applyOne(const Op& op);
  Status checkDest(const ServiceKey& svc, const DestKey& key, const DestSpec& spec) const;

  Table table_;  // keys normalized on the way in, HASHED set on stored flags
  Timeouts timeouts_{900, 120, 300};
  struct Fault {
    int errnum;
    bool applied;  // the op takes effect all the same
  };
  std::map<ServiceKey, std::vector<Fault>> faults_;
  std::set<std::string> schedulers_;
  int dumpFault_ = 0;
  uint64_t writes_ = 0;
};

}  // namespace kipvs::ipvs
