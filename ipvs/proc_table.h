#pragma once
// The real servers of a whole table from /proc/net/ip_vs, the kernel's text
// listing of every service with its dests. Over netlink a full read takes one
// GET_DEST dump per service (the kernel has no all-dests dump), and those
// dumps are most of a read's cost. At 10,000 services x 10 the listing costs
// the kernel ~60 % of the dumps' CPU time (VM: 0.7-1.5 s on one CPU against
// ~2-2.4 s of system time), but it grows faster than the table does (see
// ProcIpvsFile::readInto), so a read of it is capped.
//
// It is not the whole truth, so it is only ever joined to a netlink service
// dump, which gives every service's full spec. Per dest it shows the address,
// port, forwarding method, weight and active/inactive connection counts; not
// the thresholds, tunnel settings or persistent connection count. What it
// cannot vouch for is left to per-service netlink dumps:
//   - fwmark services (the listing omits their family),
//   - services with a tunnel dest (their tunnel settings),
//   - services of the dump that the listing lacks (created after it was read,
//     skipped when the table changed between two reads of the file, or not
//     reached before the cap), and the service a capped read stopped in.
// Thresholds and persistent connections read 0: kipvs never sets thresholds,
// and plans by active and inactive connections only.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipvs/model.h"
#include "netlink/status.h"

namespace kipvs::ipvs {

using ServiceRef = std::pair<const ServiceKey*, ServiceState*>;

// Fills the dests of a table's services from the listing, fed in chunks split
// anywhere. The table must have no dests yet.
class ProcDestsReader {
 public:
  explicit ProcDestsReader(Table& table);

  // A malformed line stops the reader (Code::kParse, naming the line): the
  // caller then reads every service over netlink instead.
  Status feed(std::string_view chunk);
  // The reading stopped before the listing's end: the service being listed
  // may be cut short, so it is left to netlink with all those not reached.
  void stopEarly();
  // After the last chunk: the services whose dests the listing did not give,
  // in table order.
  StatusOr<std::vector<ServiceRef>> finish();
  // Services whose dests came from the listing (valid after finish()).
  size_t filled() const { return filled_; }

 private:
  enum class Seen : uint8_t { kNo, kFilled, kUnsure };
  Status line(std::string_view l);
  Status serviceLine(std::string_view l);
  Status destLine(std::string_view l);

  std::vector<ServiceRef> services_;  // the table's, in key order (binary search beats map::find)
  std::vector<Seen> seen_;
  std::string partial_;               // a line cut by a chunk boundary
  size_t lineNo_ = 0;
  size_t current_ = SIZE_MAX;         // index of the service the dest lines belong to; SIZE_MAX: none of ours
  size_t filled_ = 0;
  Status error_;
};

// The listing of the calling thread's network namespace, opened once (the
// namespace is fixed at open, as a netlink socket's is) and read from the
// start each time.
class ProcIpvsFile {
 public:
  static constexpr const char* kPath = "/proc/thread-self/net/ip_vs";
  static StatusOr<ProcIpvsFile> open(const char* path = kPath);
  ProcIpvsFile(ProcIpvsFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ProcIpvsFile& operator=(ProcIpvsFile&& o) noexcept;
  ProcIpvsFile(const ProcIpvsFile&) = delete;
  ProcIpvsFile& operator=(const ProcIpvsFile&) = delete;
  ~ProcIpvsFile();

  // Reads the listing into `reader`, at most maxReads read() calls, then
  // stops it early (reads are counted in *reads); Code::kIo with errno on a
  // read error.
  //
  // Why a limit: the kernel hands out about a page of the listing per read()
  // (seq_file; more only for a service whose listing is longer), and every
  // read() walks the service table from its start to where the last one
  // stopped. With r records to a page, reaching the n-th service has cost n/r
  // steps per record so far, which is about the number of reads so far: the
  // listing is quadratic in the table's size. In the VM a record costs ~80 us
  // plus ~50 ns per step, a dests dump ~220 us (10 dests): past ~2,700 reads
  // the rest is cheaper dumped per service (at 30,000 services x 10, reading
  // the whole listing took 5.6-7.1 s, the dests dumps ~6.5 s of CPU on two
  // threads).
  Status readInto(ProcDestsReader& reader, size_t maxReads, size_t* reads);

 private:
  explicit ProcIpvsFile(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace kipvs::ipvs
