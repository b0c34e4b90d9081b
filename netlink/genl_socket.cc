#include "netlink/genl_socket.h"

#include <glog/logging.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace kipvs::netlink {
namespace {

Status errnoStatus(Code code, const std::string& what, int err) { return Status::error(code, what, err); }

}  // namespace

GenlSocket::GenlSocket(std::string family, const SocketOptions& options)
    : family_(std::move(family)), options_(options) {
  // Several recvmmsg slots let one syscall take a dump's data and its
  // NLMSG_DONE: a dump continues only after userspace reads its previous
  // datagram, and the next one is queued while that one is copied out.
  options_.rxSlots = std::max<size_t>(options_.rxSlots, 1);
  options_.rxSlotBytes = std::max<size_t>(options_.rxSlotBytes, 4096);
}

GenlSocket::~GenlSocket() { closeFd(); }

StatusOr<std::unique_ptr<GenlSocket>> GenlSocket::open(std::string family, const SocketOptions& options) {
  std::unique_ptr<GenlSocket> s(new GenlSocket(std::move(family), options));
  KIPVS_RETURN_IF_ERROR(s->openFd());
  s->reopening_ = true;  // a failure here is the caller's to see, not a reason to reopen
  Status r = s->resolveFamily();
  s->reopening_ = false;
  if (!r.isOk()) return r;
  return s;
}

void GenlSocket::closeFd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status GenlSocket::openFd() {
  closeFd();
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
  if (fd < 0) return errnoStatus(Code::kIo, "socket(AF_NETLINK, NETLINK_GENERIC)", errno);
  fd_ = fd;

  int one = 1;
  // Error acks without the echoed request: a batch's worth of errors stays small.
  if (::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one) < 0) {
    LOG(WARNING) << "NETLINK_CAP_ACK not supported: " << std::strerror(errno);
  }
  // The kernel's own error text, when it gives one, goes into Status messages.
  if (::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) < 0) {
    LOG(WARNING) << "NETLINK_EXT_ACK not supported: " << std::strerror(errno);
  }
  // FORCE variants ignore net.core.[rw]mem_max (needs CAP_NET_ADMIN); fall back.
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &options_.sndbufBytes, sizeof(int)) < 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options_.sndbufBytes, sizeof(int));
  }
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &options_.rcvbufBytes, sizeof(int)) < 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options_.rcvbufBytes, sizeof(int));
  }
  socklen_t len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, &len) < 0) rcvbuf_ = 0;
  len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf_, &len) < 0) sndbuf_ = 0;

  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    Status s = errnoStatus(Code::kIo, "bind(netlink)", errno);
    closeFd();
    return s;
  }
  socklen_t alen = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) {
    Status s = errnoStatus(Code::kIo, "getsockname(netlink)", errno);
    closeFd();
    return s;
  }
  portId_ = addr.nl_pid;
  if (rx_.empty()) {
    rx_.resize(options_.rxSlots * options_.rxSlotBytes);
    rxMsgs_.resize(options_.rxSlots);
    rxIovs_.resize(options_.rxSlots);
    rxFrom_.resize(options_.rxSlots);
  }
  return Status::ok();
}

Status GenlSocket::resolveFamily() {
  ctrl_.clear();
  uint32_t seq = seq_;
  ctrl_.beginGenl(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, seq, CTRL_CMD_GETFAMILY, 2);
  ctrl_.putString(CTRL_ATTR_FAMILY_NAME, family_);
  ctrl_.endMessage();
  advanceSeq(1);
  KIPVS_RETURN_IF_ERROR(send(ctrl_.bytes()));

  std::optional<uint16_t> id;
  int err = 0;
  std::string ext;
  Status parsed;
  Status r = receive([&](const Message& m) -> StatusOr<Next> {
    if (m.seq != seq) return Next::kMore;
    if (m.type == NLMSG_ERROR) {
      auto ack = parseAck(m);
      if (!ack) return ack.status();
      err = ack->error;
      ext = ack->extMessage;
      return Next::kDone;
    }
    if (m.type == GENL_ID_CTRL) {
      auto g = parseGenl(m);
      if (!g) return g.status();
      std::optional<Bytes> attrs[CTRL_ATTR_FAMILY_ID + 1];
      parsed = parseAttrs(g->attrs, attrs);
      if (parsed.isOk() && attrs[CTRL_ATTR_FAMILY_ID]) id = readScalar<uint16_t>(*attrs[CTRL_ATTR_FAMILY_ID]);
    }
    return Next::kMore;
  });
  KIPVS_RETURN_IF_ERROR(r);
  if (err == ENOENT) {
    return Status::error(Code::kUnsupported, "generic netlink family " + family_ + " not found", ENOENT);
  }
  if (err != 0) {
    return Status::kernel(err, "resolving generic netlink family " + family_ + (ext.empty() ? "" : ": " + ext));
  }
  KIPVS_RETURN_IF_ERROR(parsed);
  if (!id) return Status::error(Code::kParse, "family reply for " + family_ + " without a valid CTRL_ATTR_FAMILY_ID");
  familyId_ = *id;
  return Status::ok();
}

Status GenlSocket::reopen() {
  ++counters_.reopens;
  reopening_ = true;
  Status s = openFd();
  if (s.isOk()) s = resolveFamily();
  if (!s.isOk()) closeFd();  // the next send retries
  reopening_ = false;
  return s;
}

Status GenlSocket::ensureOpen() {
  if (fd_ >= 0) return Status::ok();
  return reopen();
}

Status GenlSocket::fail(Status s) {
  if (reopening_) {  // failing while resolving the family: no recursion
    closeFd();
    return s;
  }
  Status r = reopen();
  if (!r.isOk()) LOG(WARNING) << "recreating the netlink socket failed: " << r.toString();
  return s;
}

Status GenlSocket::send(Bytes messages) {
  KIPVS_RETURN_IF_ERROR(ensureOpen());
  // Messages encoded before a reopen carry the family id of then. A family
  // registered again (its module reloaded) gets a new id, and the kernel
  // answers the old one with ENOENT, which IPVS also uses for "no such
  // destination": a delete would read as done. Refuse them unsent.
  uint64_t count = 0;
  MessageIter it(messages);
  while (std::optional<Message> m = it.next()) {
    ++count;
    if (m->type != familyId_ && m->type != GENL_ID_CTRL) {
      return Status::error(Code::kIo,
                           "not sent: encoded for generic netlink family id " + std::to_string(m->type) + ", but " +
                               family_ + " is id " + std::to_string(familyId_) + " now (its module was reloaded)",
                           ESTALE);
    }
  }
  sockaddr_nl dst{};
  dst.nl_family = AF_NETLINK;  // pid 0: the kernel
  iovec iov{const_cast<uint8_t*>(messages.data()), messages.size()};
  msghdr mh{};
  mh.msg_name = &dst;
  mh.msg_namelen = sizeof dst;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  for (;;) {
    ssize_t n = ::sendmsg(fd_, &mh, 0);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    return Status::kernel(errno, "netlink sendmsg of " + std::to_string(messages.size()) + " bytes");
  }
  ++counters_.sends;
  counters_.messagesSent += count;
  return Status::ok();
}

StatusOr<bool> GenlSocket::refreshFamily() {
  const uint16_t before = familyId_;
  Status s;
  if (fd_ < 0) {
    s = reopen();
  } else {
    reopening_ = true;  // a failure here is the caller's to see, not a reason to reopen
    s = resolveFamily();
    reopening_ = false;
  }
  if (!s.isOk()) return s;
  return familyId_ != before;
}

Status GenlSocket::receive(const Handler& handler) {
  KIPVS_RETURN_IF_ERROR(ensureOpen());
  const size_t slots = options_.rxSlots;
  const size_t slotBytes = options_.rxSlotBytes;
  auto& msgs = rxMsgs_;
  auto& iovs = rxIovs_;
  auto& from = rxFrom_;
  for (;;) {
    for (size_t i = 0; i < slots; ++i) {
      iovs[i] = {rx_.data() + i * slotBytes, slotBytes};
      msgs[i].msg_hdr = msghdr{};
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_nl);
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_len = 0;
    }
    int n = ::recvmmsg(fd_, msgs.data(), static_cast<unsigned>(slots), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        ++counters_.polls;
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(options_.timeout.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail(errnoStatus(Code::kIo, "poll(netlink)", errno));
        if (r == 0) {
          return fail(Status::error(Code::kTimeout,
                                    "no netlink reply within " + std::to_string(options_.timeout.count()) +
                                        " ms; socket recreated",
                                    ETIMEDOUT));
        }
        continue;
      }
      if (err == ENOBUFS) {
        return fail(Status::kernel(ENOBUFS, "netlink receive buffer overflowed, replies were lost; socket recreated"));
      }
      return fail(errnoStatus(Code::kIo, "recvmmsg(netlink)", err));
    }
    ++counters_.receives;
    counters_.datagrams += static_cast<uint64_t>(n);
    for (int i = 0; i < n; ++i) {
      const msghdr& h = msgs[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        return fail(Status::error(Code::kIo, "netlink reply truncated (datagram over " +
                                                 std::to_string(slotBytes) + " bytes)"));
      }
      if (from[i].nl_pid != 0) continue;  // not from the kernel
      MessageIter it(Bytes(rx_.data() + i * slotBytes, msgs[i].msg_len));
      while (auto m = it.next()) {
        if (m->type == NLMSG_NOOP) continue;
        StatusOr<Next> r = handler(*m);
        if (!r) return fail(r.status());
        if (*r == Next::kDone) {
          if (i + 1 < n) VLOG(1) << "dropping " << (n - i - 1) << " unexpected netlink datagrams";
          return Status::ok();
        }
      }
      if (!it.error().isOk()) return fail(it.error());
    }
  }
}

}  // namespace kipvs::netlink
