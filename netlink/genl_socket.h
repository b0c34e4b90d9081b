#pragma once
// One generic netlink socket with its family resolved once (ipvsadm resolves
// it per command line, which is why ipvsadm -R is slow). We do send/receive
// ourselves so that every ack keeps the kernel's raw errno (libnl folds errnos
// through nl_syserr2nlerr, and ESRCH vs ENOENT matter to IPVS), every receive
// has a deadline, and many requests share one sendmsg.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "netlink/message.h"
#include "netlink/status.h"

namespace kipvs::netlink {

struct SocketOptions {
  // Requested buffer sizes (SO_*BUFFORCE when permitted, else capped by
  // net.core.[rw]mem_max). Error acks of a whole batch must fit the receive
  // buffer or the kernel drops them and reports ENOBUFS.
  int rcvbufBytes = 8 << 20;
  int sndbufBytes = 4 << 20;
  // Longest wait for the next reply datagram. The kernel answers IPVS requests
  // synchronously inside sendmsg, so this only fires when something is lost.
  std::chrono::milliseconds timeout{5000};
  // recvmmsg slots and bytes per slot. A slot must hold the largest datagram
  // (dump datagrams are at most 32 KiB). The slot size is also the kernel's
  // cue for sizing dump buffers: each dump pass allocates an skb as large as
  // the largest buffer this socket ever received into (capped at 32 KiB), at
  // least NLMSG_GOODSIZE (about a page). See ipvs/netlink_client.h for why
  // that matters.
  size_t rxSlots = 8;
  size_t rxSlotBytes = 64 << 10;
};

// Syscall counters, for benchmarks and tests.
struct IoCounters {
  uint64_t sends = 0;          // sendmsg calls
  uint64_t receives = 0;       // recvmmsg calls that returned data
  uint64_t polls = 0;          // waits for data
  uint64_t datagrams = 0;      // datagrams received
  uint64_t messagesSent = 0;   // netlink messages sent
  uint64_t reopens = 0;        // sockets recreated after timeout / ENOBUFS
};

// What a receive handler tells the loop.
enum class Next { kMore, kDone };

class GenlSocket {
 public:
  // Opens the socket and resolves `family` (e.g. "IPVS"). A family the kernel
  // doesn't know fails with Code::kUnsupported and errnum ENOENT.
  static StatusOr<std::unique_ptr<GenlSocket>> open(std::string family, const SocketOptions& options);
  ~GenlSocket();
  GenlSocket(const GenlSocket&) = delete;
  GenlSocket& operator=(const GenlSocket&) = delete;

  uint16_t familyId() const { return familyId_; }
  uint32_t portId() const { return portId_; }
  // Effective buffer sizes as the kernel accounts them (twice the request).
  int rcvbuf() const { return rcvbuf_; }
  int sndbuf() const { return sndbuf_; }
  // Largest message batch one sendmsg accepts.
  size_t maxSendBytes() const { return sndbuf_ > 64 ? static_cast<size_t>(sndbuf_) - 64 : 0; }
  const IoCounters& counters() const { return counters_; }

  // Sequence numbers: requests built from seqBase() upwards; commit with
  // advanceSeq(n) once they are sent.
  uint32_t seqBase() const { return seq_; }
  void advanceSeq(uint32_t n) { seq_ += n; }

  // One sendmsg with one or many complete messages.
  Status send(Bytes messages);

  // Reads reply messages (from the kernel only) and hands each to `handler`
  // until it returns kDone or an error. Each wait for data is bounded by the
  // timeout. On timeout (Code::kTimeout) or ENOBUFS (kKernel, ENOBUFS) replies
  // are lost: the socket is recreated and the Status says so. A handler error
  // also recreates the socket, since unread replies may still be queued.
  using Handler = std::function<StatusOr<Next>(const Message&)>;
  Status receive(const Handler& handler);

  // Closes and recreates the socket, re-resolving the family.
  Status reopen();

  // Asks the kernel for the family's id again; true if it changed (the
  // family was registered again, e.g. its module reloaded).
  StatusOr<bool> refreshFamily();

 private:
  GenlSocket(std::string family, const SocketOptions& options);
  Status openFd();
  Status resolveFamily();
  void closeFd();
  Status ensureOpen();
  Status fail(Status s);  // reopen, then return s

  std::string family_;
  SocketOptions options_;
  int fd_ = -1;
  uint32_t portId_ = 0;
  uint16_t familyId_ = 0;
  int rcvbuf_ = 0;
  int sndbuf_ = 0;
  uint32_t seq_ = 1;
  bool reopening_ = false;  // while (re)resolving the family: a failure closes, never recurses
  IoCounters counters_;
  std::vector<uint8_t> rx_;  // receive slots, reused
  std::vector<mmsghdr> rxMsgs_;
  std::vector<iovec> rxIovs_;
  std::vector<sockaddr_nl> rxFrom_;
  MessageWriter ctrl_;       // for family resolution
};

}  // namespace kipvs::netlink
