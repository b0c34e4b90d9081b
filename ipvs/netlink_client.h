#pragma once
// IpvsClient over IPVS generic netlink: one socket for writes and the
// service dump, the family resolved once, writes batched many per sendmsg;
// a second one for per-service reads (see readSocket()).
//
// Batching: the kernel runs IPVS handlers synchronously inside sendmsg, so
// what costs is syscalls. apply() packs up to maxBatchOps requests into one
// sendmsg, none with NLM_F_ACK except the last: the kernel answers a request
// without NLM_F_ACK only when it fails, and the last one's ack proves every
// earlier one was processed. Each error names its request by sequence number,
// so every op gets its own Status with the kernel's raw errno.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ipvs/client.h"
#include "ipvs/codec.h"
#include "ipvs/model.h"
#include "ipvs/proc_table.h"
#include "netlink/message.h"
#include "netlink/genl_socket.h"
#include "netlink/status.h"

namespace kipvs::ipvs {

class NetlinkIpvsClient : public IpvsClient {
 public:
  struct Options {
    netlink::SocketOptions socket;
    // Requests per sendmsg. Also capped so that every request's error ack
    // fits the receive buffer (else the kernel drops acks: ENOBUFS), and by
    // the send buffer (sendmsg's size limit).
    size_t maxBatchOps = 2048;
    size_t maxBatchBytes = 1 << 20;
    // Decode traffic counters in dumps (codec::WithStats). Off for callers
    // that never show them; connection counts are read either way.
    bool readStats = true;
    // Sockets a full read spreads its dests dumps over, each read and decoded
    // by its own thread (from parallelDumpMinServices services on). A socket
    // runs one dump at a time, but the kernel serves dumps of different
    // sockets side by side: only filling the replies holds genl's and the
    // IPVS mutex, not allocating, zeroing and copying them (VM, 10,000
    // services: 6-20 % less wall time with two than with one reader and a
    // decode thread, which this replaced). 1: the calling thread reads and
    // decodes everything (for callers whose other threads need the CPUs).
    size_t dumpReaders = 1;
    size_t parallelDumpMinServices = 256;
    // A full read takes the dests from /proc/net/ip_vs instead of one dests
    // dump per service (at 10,000 x 10, ~60 % of the kernel time), joined to
    // the netlink service dump; see ipvs/proc_table.h for what the listing
    // lacks (thresholds, tunnel settings, persistent connections) and what is
    // still read over netlink. For reconcile, which needs none of those;
    // `kipvs dump` shows them and keeps to netlink.
    bool destsFromProc = false;
    // At most this many reads of the listing; the services not reached by
    // then take a dests dump each (ProcIpvsFile::readInto says why).
    size_t procMaxReads = 2048;
    // The listing's path (tests point it elsewhere).
    std::string procPath = ProcIpvsFile::kPath;
    // The generic netlink family (IPVS's; a test names one no kernel has, to
    // see the error a kernel without ip_vs gives).
    std::string genlFamily = codec::kGenlName;
  };

  // How the last full read (dumpTable) got its dests.
  struct ReadReport {
    size_t servicesFromProc = 0;     // dests from /proc/net/ip_vs
    size_t servicesOverNetlink = 0;  // dests from a dests dump each
    size_t procReads = 0;            // read() calls on the listing
    Status procError;                // why the listing was not used, if it was asked for and was not
  };

  // Opens the socket and resolves the "IPVS" family: Code::kUnsupported when
  // the family is unknown (module not loaded).
  static StatusOr<std::unique_ptr<NetlinkIpvsClient>> create(Options options);
  static StatusOr<std::unique_ptr<NetlinkIpvsClient>> create() { return create(Options{}); }

  StatusOr<Table> dumpTable() override;
  StatusOr<std::optional<ServiceState>> dumpService(const ServiceKey& key) override;
  std::vector<Status> apply(std::span<const Op> ops) override;
  StatusOr<Timeouts> getTimeouts() override;
  Status setTimeouts(const Timeouts& t) override;
  Status zero(const std::optional<ServiceKey>& key) override;
  Status flush() override;
  StatusOr<Info> info() override;
  uint64_t writeCount() const override { return writeCount_; }
  const ReadReport& lastRead() const { return lastRead_; }

  // Joins the full read (dumpTable) that another thread is running: takes
  // services from the same queue and reads their dests on a socket of its
  // own until none are left, then returns; the read's result is the same.
  // For a caller that would otherwise wait for that read (reconcile, its own
  // work done, while the read still has thousands of dests dumps to go).
  // While the read is still on its service dump, waits for it to get to the
  // dests; returns at once when no read is running. One helper at a time.
  // Returns how many services' dests this thread read.
  size_t helpRead();

  // The read socket's options (see readSocket()) made from `base`; public so
  // that bench/dump_floor reads the way the client does.
  static netlink::SocketOptions readSocketOptions(netlink::SocketOptions base);

  // Syscall counters of all sockets, summed.
  netlink::IoCounters ioCounters() const;
  // Ops per sendmsg actually used (after the buffer-size caps).
  size_t batchOps() const;

 private:
  NetlinkIpvsClient(Options options, std::unique_ptr<netlink::GenlSocket> socket,
                    std::optional<ProcIpvsFile> procFile, Status procError);

  // Sends one request built by `fill` with NLM_F_ACK and reads until its ack;
  // replies before the ack go to `onReply` (may be empty).
  using ReplyFn = std::function<Status(const netlink::GenlView&)>;
  Status request(netlink::GenlSocket& sock, uint8_t cmd, const std::function<Status(netlink::MessageWriter&)>& fill,
                 const ReplyFn& onReply) {
    return request(sock, writer_, cmd, fill, onReply);
  }
  Status request(netlink::GenlSocket& sock, netlink::MessageWriter& writer, uint8_t cmd,
                 const std::function<Status(netlink::MessageWriter&)>& fill, const ReplyFn& onReply);
  // Runs the dests dump of `key` on `sock` (a read socket), handing each
  // dest's attributes to onDest.
  Status dumpDests(netlink::GenlSocket& sock, netlink::MessageWriter& writer, const ServiceKey& key,
                   const std::function<Status(netlink::Bytes)>& onDest);
  // The dests of `services`, over `readers` read sockets, each with its own
  // thread (the first is the calling thread), and helpRead()'s.
  Status dumpAllDests(std::vector<ServiceRef> services, size_t readers);
  // Fills the dests of `table` (fresh from the service dump) from the
  // listing; returns the services left to dests dumps.
  StatusOr<std::vector<ServiceRef>> readDestsFromProc(Table& table);
  // The services whose dests a full read still has to dump, shared by its readers.
  struct DestsWork;
  // One batch: ops[begin, end) already encoded in writer_ for `family` with seqs from firstSeq.
  void runBatch(std::span<const Op> ops, const std::vector<size_t>& indexOf, uint32_t firstSeq, uint16_t family,
                std::vector<Status>& results);
  // After a batch some of whose ops met ENOENT: were they sent to a family id
  // that is gone? Then they were not applied, whatever the errno says.
  void checkFamily(std::span<const Op> ops, const std::vector<size_t>& indexOf, uint16_t family,
                   std::vector<Status>& results);

  // The socket for per-service reads (dests dumps, dumpService), opened on
  // first use. The kernel sizes each dump pass's buffer by the largest
  // receive buffer the socket has ever used (up to 32 KiB, at least about a
  // page), and a dests dump is two passes (the dests, then NLMSG_DONE): with
  // page-sized receive slots the 10,000 dests dumps of a full read took 40%
  // less kernel time in the VM (bench/dump_floor --slot-bytes). The service
  // dump stays on the main socket with large slots: it restarts its walk of
  // the service table on every pass, so it wants as few passes as possible.
  StatusOr<netlink::GenlSocket*> readSocket();

  codec::WithStats stats() const { return options_.readStats ? codec::WithStats::kYes : codec::WithStats::kNo; }

  Options options_;
  std::unique_ptr<netlink::GenlSocket> socket_;
  std::unique_ptr<netlink::GenlSocket> readSocket_;
  std::vector<std::unique_ptr<netlink::GenlSocket>> extraReadSockets_;  // dumpReaders beyond the first
  netlink::MessageWriter writer_;  // reused for every request and batch

  // What helpRead() joins: the full read in progress, and who is helping.
  struct SharedRead {
    std::mutex mu;
    std::condition_variable cv;
    bool readingServices = false;  // dumpTable is running: helpRead() waits for `dests` or its end
    DestsWork* dests = nullptr;    // dumpAllDests is running
    int helpers = 0;               // helpRead()s inside `dests`
  };
  SharedRead shared_;
  std::unique_ptr<netlink::GenlSocket> helpSocket_;  // helpRead()'s, opened on first use
  netlink::MessageWriter helpWriter_;
  uint64_t writeCount_ = 0;
  // /proc/net/ip_vs of the namespace the sockets were opened in (destsFromProc).
  std::optional<ProcIpvsFile> procFile_;
  Status procOpenError_;
  ReadReport lastRead_;
};

}  // namespace kipvs::ipvs
