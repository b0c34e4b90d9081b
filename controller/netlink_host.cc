#include "controller/netlink_host.h"

#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <set>

#include <glog/logging.h>

#include "controller/owned_record.h"
#include "netlink/message.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace kipvs::controller {

using netlink::Bytes;
using netlink::Message;
using netlink::MessageWriter;

// One NETLINK_ROUTE socket and the request/answer loop: a request goes out
// with NLM_F_ACK (or as a dump) and everything the kernel sends back for its
// sequence number is read until the ack, the error or NLMSG_DONE. The errno
// comes straight from the kernel's error message.
class RtnlSocket {
 public:
  static constexpr int kTimeoutMs = 5000;  // rtnetlink answers inside sendmsg; this only fires when something is lost

  RtnlSocket() = default;
  RtnlSocket(const RtnlSocket&) = delete;
  RtnlSocket& operator=(const RtnlSocket&) = delete;
  ~RtnlSocket() { closeFd(); }

  Status openFd() {
    fd_ = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) return Status::error(Code::kIo, "rtnetlink socket", errno);
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      Status s = Status::error(Code::kIo, "bind rtnetlink socket", errno);
      closeFd();
      return s;
    }
    const int one = 1;
    // Best effort: error text (4.12+) and no echo of the request in errors (4.3+).
    (void)::setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    (void)::setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    return Status::ok();
  }

  uint32_t nextSeq() { return ++seq_; }

  // NETLINK_GET_STRICT_CHK (4.20+): the kernel checks dump requests strictly
  // and honours the filters in them (table, protocol, type, device for
  // routes). Only route dumps turn it on, for their own request: the other
  // requests stay as every kernel accepts them. False where unsupported.
  bool setStrictDump(bool on) {
    if (fd_ < 0 && !openFd().isOk()) return false;
    const int v = on ? 1 : 0;
    return ::setsockopt(fd_, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &v, sizeof v) == 0;
  }

  // Sends the one message in `w` (sequence `seq`) and reads its answer,
  // handing each reply (not acks/errors/done) to onReply. Ok, the kernel's
  // errno (kKernel, with its extended-ack text), or a socket failure (kIo /
  // kTimeout, after which the socket is recreated so a late answer cannot be
  // mistaken for the next one's).
  Status exchange(const MessageWriter& w, uint32_t seq, const std::string& what,
                  const std::function<void(const Message&)>& onReply) {
    if (fd_ < 0) KIPVS_RETURN_IF_ERROR(openFd().withContext(what));
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    const Bytes out = w.bytes();
    ssize_t n;
    do {
      n = ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return fail(Status::error(Code::kIo, what + ": send", errno));

    bool interrupted = false;
    for (;;) {
      StatusOr<Bytes> datagram = receive(what);
      if (!datagram.isOk()) return fail(datagram.status());
      netlink::MessageIter it(*datagram);
      while (auto m = it.next()) {
        // A late answer to an exchange that gave up. (nlmsg_pid is our own
        // port in replies; the sender was checked in receive().)
        if (m->seq != seq) continue;
        if (m->flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m->type == NLMSG_ERROR) {
          StatusOr<netlink::Ack> ack = netlink::parseAck(*m);
          if (!ack.isOk()) return fail(ack.status().withContext(what));
          if (ack->error == 0) return Status::ok();
          return Status::kernel(ack->error, ack->extMessage.empty() ? what : what + ": " + ack->extMessage);
        }
        if (m->type == NLMSG_DONE) {
          if (int err = netlink::parseDoneError(*m); err != 0) return Status::kernel(err, what);
          // A dump is not a snapshot; when the kernel says it changed
          // underneath, the caller reads again.
          if (interrupted) return Status::error(Code::kIo, what + ": dump interrupted by a concurrent change", EINTR);
          return Status::ok();
        }
        if (m->type == NLMSG_NOOP || m->type == NLMSG_OVERRUN) continue;
        onReply(*m);
      }
      if (!it.error().isOk()) return fail(it.error().withContext(what));
    }
  }

  // Sends the messages in `w` (sequences firstSeq .. firstSeq+count-1, only
  // the last with NLM_F_ACK) in one sendmsg and collects one Status per
  // message. rtnetlink handles each request inside sendmsg, in order, and
  // answers one without NLM_F_ACK only when it fails, so the last one's ack
  // comes after every earlier error: a message it has not answered by then
  // succeeded. One syscall for the send and usually one for the answers,
  // instead of a round trip per address, and no ack to build and read for
  // each (VM, 10,000 VIP routes: building the acks was 5 % of that thread's
  // samples, polling for and reading them 15 %).
  std::vector<Status> exchangeBatch(const MessageWriter& w, uint32_t firstSeq, size_t count,
                                    const std::function<std::string(size_t)>& what) {
    std::vector<Status> out(count);  // ok: a request the last one's ack finds unanswered succeeded
    if (fd_ < 0) {
      if (Status s = openFd(); !s.isOk()) {
        for (size_t i = 0; i < count; ++i) out[i] = s.withContext(what(i));
        return out;
      }
    }
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    const Bytes bytes = w.bytes();
    ssize_t n;
    do {
      n = ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      Status s = fail(Status::error(Code::kIo, "send", errno));
      for (size_t i = 0; i < count; ++i) out[i] = s.withContext(what(i));
      return out;
    }
    std::vector<bool> seen(count, false);
    while (!seen[count - 1]) {
      StatusOr<Bytes> datagram = receive("address batch");
      if (!datagram.isOk()) {
        Status s = fail(datagram.status());
        for (size_t i = 0; i < count; ++i) {
          if (!seen[i]) out[i] = s.withContext(what(i) + " (result unknown)");
        }
        return out;
      }
      netlink::MessageIter it(*datagram);
      while (auto m = it.next()) {
        if (m->type != NLMSG_ERROR || m->seq < firstSeq || m->seq >= firstSeq + count) continue;
        const size_t i = m->seq - firstSeq;
        if (seen[i]) continue;
        StatusOr<netlink::Ack> ack = netlink::parseAck(*m);
        if (!ack.isOk()) {
          out[i] = ack.status().withContext(what(i));
        } else if (ack->error == 0) {
          out[i] = Status::ok();
        } else {
          out[i] = Status::kernel(ack->error, ack->extMessage.empty() ? what(i) : what(i) + ": " + ack->extMessage);
        }
        seen[i] = true;
      }
    }
    return out;
  }

  uint32_t reserveSeqs(size_t n) {
    const uint32_t first = seq_ + 1;
    seq_ += static_cast<uint32_t>(n);
    return first;
  }

 private:
  // One datagram, whole: peeked first for its size.
  StatusOr<Bytes> receive(const std::string& what) {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, kTimeoutMs);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Status::error(Code::kIo, what + ": poll", errno);
      if (r == 0) return Status::error(Code::kTimeout, what + ": no answer from the kernel", ETIMEDOUT);
      ssize_t len = ::recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
      if (len < 0 && errno == EINTR) continue;
      if (len < 0) return Status::error(Code::kIo, what + ": receive", errno);  // ENOBUFS: answers lost
      if (buf_.size() < static_cast<size_t>(len)) buf_.resize(static_cast<size_t>(len));
      sockaddr_nl from{};
      socklen_t fromLen = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&from), &fromLen);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::error(Code::kIo, what + ": receive", errno);
      if (from.nl_pid != 0) continue;  // only the kernel speaks to us
      return Bytes(buf_.data(), static_cast<size_t>(n));
    }
  }

  Status fail(Status s) {
    closeFd();  // reopened on the next exchange
    return s;
  }

  void closeFd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  uint32_t seq_ = 0;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(32 << 10);
};

namespace {

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;  // IFLA_INFO_KIND: "dummy", "veth"; empty for physical devices and lo
  unsigned flags = 0;
};

struct AddrInfo {
  int ifindex = 0;
  ipvs::Address address;
  unsigned prefixlen = 0;
  uint32_t flags = 0;  // IFA_F_*
};

// The fixed header (ifinfomsg, ifaddrmsg) and the attributes after it.
template <typename Header>
bool splitPayload(const Message& m, Header* h, Bytes* attrs) {
  constexpr size_t kLen = NLMSG_ALIGN(sizeof(Header));
  if (m.payload.size() < kLen) return false;
  std::memcpy(h, m.payload.data(), sizeof(Header));
  *attrs = m.payload.subspan(kLen);
  return true;
}

bool parseLink(const Message& m, LinkInfo* out) {
  ifinfomsg ifi{};
  Bytes attrs;
  if (m.type != RTM_NEWLINK || !splitPayload(m, &ifi, &attrs)) return false;
  std::optional<Bytes> tb[IFLA_MAX + 1];
  if (!netlink::parseAttrs(attrs, tb).isOk()) return false;
  out->index = ifi.ifi_index;
  out->flags = ifi.ifi_flags;
  if (tb[IFLA_IFNAME]) out->name = netlink::readString(*tb[IFLA_IFNAME]);
  if (tb[IFLA_LINKINFO]) {
    std::optional<Bytes> info[IFLA_INFO_MAX + 1];
    if (netlink::parseAttrs(*tb[IFLA_LINKINFO], info).isOk() && info[IFLA_INFO_KIND]) {
      out->kind = netlink::readString(*info[IFLA_INFO_KIND]);
    }
  }
  return true;
}

bool parseAddr(const Message& m, AddrInfo* out) {
  ifaddrmsg ifa{};
  Bytes attrs;
  if (m.type != RTM_NEWADDR || !splitPayload(m, &ifa, &attrs)) return false;
  if (ifa.ifa_family != AF_INET && ifa.ifa_family != AF_INET6) return false;
  std::optional<Bytes> tb[IFA_MAX + 1];
  if (!netlink::parseAttrs(attrs, tb).isOk()) return false;
  // IFA_LOCAL is this host's side; IFA_ADDRESS is the peer on point-to-point
  // links and otherwise the same address (the only one for most v6).
  const std::optional<Bytes>& a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
  const size_t len = ifa.ifa_family == AF_INET ? 4 : 16;
  if (!a || a->size() != len) return false;
  out->ifindex = static_cast<int>(ifa.ifa_index);
  out->prefixlen = ifa.ifa_prefixlen;
  out->flags = ifa.ifa_flags;
  if (tb[IFA_FLAGS]) out->flags = netlink::readScalar<uint32_t>(*tb[IFA_FLAGS]).value_or(ifa.ifa_flags);
  out->address = ipvs::Address{};
  out->address.family = ifa.ifa_family == AF_INET ? ipvs::Family::kV4 : ipvs::Family::kV6;
  std::memcpy(out->address.bytes.data(), a->data(), len);
  return true;
}

struct RouteInfo {
  ipvs::Address dst;
  unsigned dstLen = 0;
  uint32_t table = 0;
  uint8_t protocol = 0;
  uint8_t type = 0;  // RTN_*
  int oif = 0;
};

bool parseRoute(const Message& m, RouteInfo* out) {
  rtmsg rtm{};
  Bytes attrs;
  if (m.type != RTM_NEWROUTE || !splitPayload(m, &rtm, &attrs)) return false;
  if (rtm.rtm_family != AF_INET && rtm.rtm_family != AF_INET6) return false;  // also skips multicast tables
  std::optional<Bytes> tb[RTA_MAX + 1];
  if (!netlink::parseAttrs(attrs, tb).isOk()) return false;
  const size_t len = rtm.rtm_family == AF_INET ? 4 : 16;
  out->dst = ipvs::Address{};
  out->dst.family = rtm.rtm_family == AF_INET ? ipvs::Family::kV4 : ipvs::Family::kV6;
  if (tb[RTA_DST]) {
    if (tb[RTA_DST]->size() != len) return false;
    std::memcpy(out->dst.bytes.data(), tb[RTA_DST]->data(), len);
  }
  out->dstLen = rtm.rtm_dst_len;
  // RTA_TABLE carries ids above 255; rtm_table says RT_TABLE_COMPAT then.
  out->table = tb[RTA_TABLE] ? netlink::readScalar<uint32_t>(*tb[RTA_TABLE]).value_or(rtm.rtm_table) : rtm.rtm_table;
  out->protocol = rtm.rtm_protocol;
  out->type = rtm.rtm_type;
  out->oif = tb[RTA_OIF] ? static_cast<int>(netlink::readScalar<uint32_t>(*tb[RTA_OIF]).value_or(0)) : 0;
  return true;
}

// dev_valid_name() in net/core/dev.c, checked here so the error names the
// problem instead of a bare EINVAL.
Status validateIfname(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname == "." || ifname == "..") {
    return Status::invalid("interface name \"" + ifname + "\": want 1 to " + std::to_string(IFNAMSIZ - 1) + " bytes");
  }
  for (char c : ifname) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) {
      return Status::invalid("interface name \"" + ifname + "\": no '/', ':' or whitespace");
    }
  }
  return Status::ok();
}

// "net/ipv4/vs/conntrack" under root, refusing anything that could leave it.
StatusOr<std::string> sysctlFile(const std::string& root, const std::string& path) {
  if (path.empty() || path.front() == '/' || path.back() == '/') {
    return Status::invalid("sysctl path \"" + path + "\": want a relative path like net/ipv4/ip_forward");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return Status::invalid("sysctl path \"" + path + "\": empty, . or .. component");
    }
    start = end + 1;
  }
  return root + "/" + path;
}

}  // namespace

// --- rtnetlink requests ---

namespace {

constexpr uint16_t kDoFlags = NLM_F_REQUEST | NLM_F_ACK;
// A batch's requests (changeBatch): the last one gets NLM_F_ACK, the others
// are answered only when they fail (exchangeBatch).
constexpr uint16_t kBatchFlags = NLM_F_REQUEST;
constexpr uint16_t kDumpFlags = NLM_F_REQUEST | NLM_F_DUMP;

// The link named ifname; the kernel answers ENODEV when there is none.
StatusOr<LinkInfo> getLink(RtnlSocket& rtnl, const std::string& ifname) {
  const std::string what = "interface " + ifname;
  MessageWriter w;
  const uint32_t seq = rtnl.nextSeq();
  w.beginMessage(RTM_GETLINK, kDoFlags, seq);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  w.putRaw(&ifi, sizeof ifi);
  w.putString(IFLA_IFNAME, ifname);
  w.endMessage();
  LinkInfo info;
  bool found = false;
  KIPVS_RETURN_IF_ERROR(rtnl.exchange(w, seq, what, [&](const Message& m) { found = parseLink(m, &info) || found; }));
  if (!found) return Status::error(Code::kParse, what + ": no link in the kernel's answer", EPROTO);
  return info;
}

// Dumps (RTM_GETLINK / RTM_GETADDR / RTM_GETROUTE), read again when the
// kernel reports that the table changed underneath. The request is `header`
// (by default all zero: family AF_UNSPEC, v4 then v6) plus what `attrs` adds.
template <typename Header, typename Info, typename Parse>
StatusOr<std::vector<Info>> dump(RtnlSocket& rtnl, uint16_t type, const std::string& what, Parse parse,
                                 const Header& header = Header{},
                                 const std::function<void(MessageWriter&)>& attrs = nullptr) {
  Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::vector<Info> out;
    MessageWriter w;
    const uint32_t seq = rtnl.nextSeq();
    w.beginMessage(type, kDumpFlags, seq);
    w.putRaw(&header, sizeof header);
    if (attrs) attrs(w);
    w.endMessage();
    s = rtnl.exchange(w, seq, what, [&](const Message& m) {
      Info info;
      if (parse(m, &info)) out.push_back(std::move(info));
    });
    if (s.isOk()) return out;
    if (!(s.code() == Code::kIo && s.errnum() == EINTR)) return s;
  }
  return s;
}

StatusOr<std::vector<AddrInfo>> dumpAddresses(RtnlSocket& rtnl, const std::string& what) {
  return dump<ifaddrmsg, AddrInfo>(rtnl, RTM_GETADDR, what, parseAddr);
}

StatusOr<std::vector<RouteInfo>> dumpRoutes(RtnlSocket& rtnl, const std::string& what) {
  return dump<rtmsg, RouteInfo>(rtnl, RTM_GETROUTE, what, parseRoute);
}

// kipvs's local routes through ifindex, one dump per family in which the
// kernel filters (table local, our protocol, type local, the device). With
// strict dump checking the kernel sends only those, so a host with a large
// routing table (a BGP speaker) costs what kipvs owns, not what the host
// has. A kernel that cannot filter (before 4.20) sends every route and the
// caller's own filter does the work; one that refuses the filtered request
// gets the plain dump.
// As `ip route` names the types.
std::string routeTypeName(uint8_t type) {
  switch (type) {
    case RTN_UNICAST: return "unicast";
    case RTN_LOCAL: return "local";
    case RTN_BROADCAST: return "broadcast";
    case RTN_ANYCAST: return "anycast";
    case RTN_MULTICAST: return "multicast";
    case RTN_BLACKHOLE: return "blackhole";
    case RTN_UNREACHABLE: return "unreachable";
    case RTN_PROHIBIT: return "prohibit";
    case RTN_THROW: return "throw";
    case RTN_NAT: return "nat";
    default: return "type " + std::to_string(type);
  }
}

// The type (RTN_*) of the route the kernel picks for packets to addr, as
// `ip route get` asks; a blackhole, unreachable or prohibit route answers
// with its errno (EINVAL, EHOSTUNREACH, EACCES) instead.
StatusOr<uint8_t> lookupRouteType(RtnlSocket& rtnl, const ipvs::Address& addr, const std::string& what) {
  MessageWriter w;
  const uint32_t seq = rtnl.nextSeq();
  w.beginMessage(RTM_GETROUTE, kDoFlags, seq);
  rtmsg rtm{};
  rtm.rtm_family = addr.isV4() ? AF_INET : AF_INET6;
  rtm.rtm_dst_len = addr.isV4() ? 32 : 128;
  w.putRaw(&rtm, sizeof rtm);
  w.putBytes(RTA_DST, addr.bytes.data(), addr.size());
  w.endMessage();
  std::optional<uint8_t> type;
  Status s = rtnl.exchange(w, seq, what, [&](const Message& m) {
    RouteInfo r;
    if (parseRoute(m, &r)) type = r.type;
  });
  if (!s.isOk()) return s;
  if (!type) return Status::error(Code::kIo, what + ": the kernel's answer has no route", EPROTO);
  return *type;
}

StatusOr<std::vector<RouteInfo>> dumpOurRoutes(RtnlSocket& rtnl, int ifindex, const std::string& what) {
  std::vector<RouteInfo> out;
  const bool strict = rtnl.setStrictDump(true);
  Status s;
  for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    rtmsg rtm{};
    rtm.rtm_family = family;
    rtm.rtm_table = RT_TABLE_LOCAL;
    rtm.rtm_protocol = kRouteProtocol;
    rtm.rtm_type = RTN_LOCAL;
    auto routes = dump<rtmsg, RouteInfo>(rtnl, RTM_GETROUTE, what, parseRoute, rtm, [&](MessageWriter& w) {
      w.putU32(RTA_OIF, static_cast<uint32_t>(ifindex));
    });
    if (routes.isOk()) {
      out.insert(out.end(), routes->begin(), routes->end());
    } else if (!(family == AF_INET6 && routes.status().errnum() == EAFNOSUPPORT)) {  // no IPv6 in this kernel
      s = routes.status();
      break;
    }
  }
  if (strict) rtnl.setStrictDump(false);
  if (s.isOk()) return out;
  if (s.code() != Code::kKernel) return s;  // lost answers, timeouts: not the filter's fault
  LOG(WARNING) << what << ": filtered route dump refused (" << s.toString() << "); reading every route";
  return dumpRoutes(rtnl, what);
}

StatusOr<std::vector<LinkInfo>> dumpLinks(RtnlSocket& rtnl, const std::string& what) {
  return dump<ifinfomsg, LinkInfo>(rtnl, RTM_GETLINK, what, parseLink);
}

// RTM_NEWLINK with IFF_UP: creates (kind non-empty, by name) or changes (by index).
Status newLink(RtnlSocket& rtnl, const std::string& ifname, int index, const std::string& kind,
               const std::string& what) {
  MessageWriter w;
  const uint32_t seq = rtnl.nextSeq();
  const bool create = !kind.empty();
  w.beginMessage(RTM_NEWLINK, kDoFlags | (create ? NLM_F_CREATE | NLM_F_EXCL : 0), seq);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  ifi.ifi_flags = IFF_UP;  // created up: one request, not two
  ifi.ifi_change = IFF_UP;
  w.putRaw(&ifi, sizeof ifi);
  if (create) {
    w.putString(IFLA_IFNAME, ifname);
    size_t nest = w.beginNest(IFLA_LINKINFO);
    w.putString(IFLA_INFO_KIND, kind);
    w.endNest(nest);
  }
  w.endMessage();
  return rtnl.exchange(w, seq, what, [](const Message&) {});
}

}  // namespace

NetlinkHostNetwork::NetlinkHostNetwork(std::unique_ptr<RtnlSocket> rtnl, Options options)
    : rtnl_(std::move(rtnl)), options_(std::move(options)) {}

NetlinkHostNetwork::~NetlinkHostNetwork() = default;

StatusOr<std::unique_ptr<NetlinkHostNetwork>> NetlinkHostNetwork::open(Options options) {
  auto rtnl = std::make_unique<RtnlSocket>();
  KIPVS_RETURN_IF_ERROR(rtnl->openFd());
  return std::unique_ptr<NetlinkHostNetwork>(new NetlinkHostNetwork(std::move(rtnl), std::move(options)));
}

Status NetlinkHostNetwork::ensureDummy(const std::string& ifname) {
  KIPVS_RETURN_IF_ERROR(validateIfname(ifname));
  StatusOr<LinkInfo> link = getLink(*rtnl_, ifname);
  if (!link.isOk() && link.status().code() == Code::kKernel && link.status().errnum() == ENODEV) {
    Status s = newLink(*rtnl_, ifname, 0, "dummy", "create dummy interface " + ifname);
    if (s.isOk()) return s;
    if (s.code() == Code::kKernel && s.errnum() == EOPNOTSUPP) {
      // "Unknown device type": a kernel without the dummy driver (CONFIG_DUMMY).
      return Status::error(Code::kUnsupported, s.message() + " (no dummy driver in this kernel?)", EOPNOTSUPP);
    }
    if (!(s.code() == Code::kKernel && s.errnum() == EEXIST)) return s;
    link = getLink(*rtnl_, ifname);  // lost a race with another creator: judge what is there now
  }
  if (!link.isOk()) return link.status();
  if (link->kind != "dummy") {
    return Status::invalid("interface " + ifname + " exists with type \"" +
                           (link->kind.empty() ? std::string("device") : link->kind) +
                           "\", not dummy: not taking it over");
  }
  if (link->flags & IFF_UP) return Status::ok();
  return newLink(*rtnl_, ifname, link->index, "", "bring up interface " + ifname);
}

StatusOr<std::set<ipvs::Address>> NetlinkHostNetwork::boundAddresses(const std::string& ifname) {
  const std::string what = "list addresses of " + ifname;
  KIPVS_RETURN_IF_ERROR(validateIfname(ifname));
  StatusOr<LinkInfo> link = getLink(*rtnl_, ifname);
  if (!link.isOk()) return link.status().withContext("list addresses");
  // Older kernels ignore the index in a dump request: filter here.
  StatusOr<std::vector<AddrInfo>> all = dumpAddresses(*rtnl_, what);
  if (!all.isOk()) return all.status();
  // Only the form kipvs binds (/32, /128): another address on the dummy is
  // someone else's, neither listed as bound nor unbound (an unbind of the
  // /32 would miss it, and the kernel's EADDRNOTAVAIL read as "gone").
  std::set<ipvs::Address> out;
  for (const AddrInfo& a : *all) {
    if (a.ifindex == link->index && !isIpv6LinkLocal(a.address) && a.prefixlen == (a.address.isV4() ? 32u : 128u)) {
      out.insert(a.address);
    }
  }
  return out;
}

std::vector<Status> NetlinkHostNetwork::changeBatch(const std::string& ifname, std::span<const ipvs::Address> addrs,
                                                    const DescribeFn& what, const BuildFn& build, int alreadyErrno) {
  std::vector<Status> out(addrs.size());
  if (addrs.empty()) return out;
  Status linkStatus = validateIfname(ifname);
  StatusOr<LinkInfo> link = linkStatus.isOk() ? getLink(*rtnl_, ifname) : StatusOr<LinkInfo>(linkStatus);
  if (!link.isOk()) {
    for (size_t i = 0; i < addrs.size(); ++i) out[i] = link.status().withContext(what(addrs[i]));
    return out;
  }
  // Acks of one chunk must fit the socket's receive queue (each is its own skb).
  constexpr size_t kChunk = 128;
  MessageWriter w;
  std::vector<size_t> sent;  // indexes of addrs in this chunk that passed validation
  for (size_t begin = 0; begin < addrs.size(); begin += kChunk) {
    const size_t end = std::min(addrs.size(), begin + kChunk);
    sent.clear();
    w.clear();
    const uint32_t firstSeq = rtnl_->reserveSeqs(end - begin);
    for (size_t i = begin; i < end; ++i) {
      if (Status v = validateBindable(addrs[i], what(addrs[i])); !v.isOk()) {
        out[i] = std::move(v);
        continue;
      }
      build(w, addrs[i], link->index, firstSeq + static_cast<uint32_t>(sent.size()));
      sent.push_back(i);
    }
    if (sent.empty()) continue;
    w.addFlagsToLast(NLM_F_ACK);
    std::vector<Status> res =
        rtnl_->exchangeBatch(w, firstSeq, sent.size(), [&](size_t j) { return what(addrs[sent[j]]); });
    for (size_t j = 0; j < sent.size(); ++j) {
      Status& s = res[j];
      // Idempotent: already there / already gone is the state asked for.
      if (s.code() == Code::kKernel && s.errnum() == alreadyErrno) s = Status::ok();
      out[sent[j]] = std::move(s);
    }
  }
  return out;
}

std::vector<Status> NetlinkHostNetwork::changeAddresses(bool add, const std::string& ifname,
                                                        std::span<const ipvs::Address> addrs) {
  auto what = [&](const ipvs::Address& a) {
    return std::string(add ? "bind " : "unbind ") + a.toString() + "/" + (a.isV4() ? "32" : "128") +
           (add ? " to " : " from ") + ifname;
  };
  auto build = [&](MessageWriter& w, const ipvs::Address& addr, int ifindex, uint32_t seq) {
    w.beginMessage(add ? RTM_NEWADDR : RTM_DELADDR, kBatchFlags | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), seq);
    ifaddrmsg ifa{};
    ifa.ifa_family = addr.isV4() ? AF_INET : AF_INET6;
    ifa.ifa_prefixlen = addr.isV4() ? 32 : 128;
    // Usable at once: duplicate address detection would keep a v6 VIP
    // "tentative" (not bindable, not answering) for a second or more.
    ifa.ifa_flags = addr.isV4() ? 0 : IFA_F_NODAD;
    ifa.ifa_scope = RT_SCOPE_UNIVERSE;  // what `ip addr add` and kube-proxy use
    ifa.ifa_index = static_cast<uint32_t>(ifindex);
    w.putRaw(&ifa, sizeof ifa);
    w.putBytes(IFA_LOCAL, addr.bytes.data(), addr.size());
    w.putBytes(IFA_ADDRESS, addr.bytes.data(), addr.size());
    w.endMessage();
  };
  return changeBatch(ifname, addrs, what, build, add ? EEXIST : EADDRNOTAVAIL);
}

std::vector<Status> NetlinkHostNetwork::changeRoutes(bool add, const std::string& ifname,
                                                     std::span<const ipvs::Address> addrs) {
  auto what = [&](const ipvs::Address& a) {
    return std::string(add ? "add" : "delete") + " local route " + a.toString() + "/" + (a.isV4() ? "32" : "128") +
           " dev " + ifname;
  };
  auto build = [&](MessageWriter& w, const ipvs::Address& addr, int ifindex, uint32_t seq) {
    // EXCL: an add never joins or replaces a route someone else made for the
    // same address (EEXIST, looked at below).
    w.beginMessage(add ? RTM_NEWROUTE : RTM_DELROUTE, kBatchFlags | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), seq);
    rtmsg rtm{};
    rtm.rtm_family = addr.isV4() ? AF_INET : AF_INET6;
    rtm.rtm_dst_len = addr.isV4() ? 32 : 128;
    rtm.rtm_table = RT_TABLE_LOCAL;
    // A delete names our protocol, so it can only remove our own route.
    rtm.rtm_protocol = kRouteProtocol;
    rtm.rtm_scope = add ? RT_SCOPE_HOST : RT_SCOPE_NOWHERE;  // NOWHERE: any scope, as `ip route del` sends
    rtm.rtm_type = RTN_LOCAL;
    w.putRaw(&rtm, sizeof rtm);
    w.putBytes(RTA_DST, addr.bytes.data(), addr.size());
    w.putU32(RTA_OIF, static_cast<uint32_t>(ifindex));
    w.endMessage();
  };
  std::vector<Status> out = changeBatch(ifname, addrs, what, build, add ? 0 : ESRCH);
  if (!add) return out;
  // EEXIST: table local has a route for the address already, not ours.
  // Where that makes it local (its own address's route, an address left by
  // --vip-mode=address, someone else's local route) it is what we want; a
  // blackhole, unreachable or unicast route there is not: IPVS never sees
  // the packets, and "added" would hide it on every run.
  for (size_t i = 0; i < addrs.size(); ++i) {
    if (!(out[i].code() == Code::kKernel && out[i].errnum() == EEXIST)) continue;
    StatusOr<uint8_t> type = lookupRouteType(*rtnl_, addrs[i], "route lookup for " + addrs[i].toString());
    if (type.isOk() && *type == RTN_LOCAL) {
      out[i] = Status::ok();
      continue;
    }
    std::string why;
    if (type.isOk()) {
      why = ", and the kernel routes it as " + routeTypeName(*type) + ", not as local";
    } else if (type.status().code() == Code::kKernel) {
      why = ", and the kernel does not route it as local (lookup: " + errnoLabel(type.status().errnum()) +
            ", as for a blackhole, unreachable or prohibit route)";
    } else {
      why = " (" + type.status().toString() + ")";
    }
    out[i] = Status::kernel(EEXIST, what(addrs[i]) + ": table local has a route for it already, not kipvs's" + why);
  }
  return out;
}

StatusOr<std::set<ipvs::Address>> NetlinkHostNetwork::localRoutes(const std::string& ifname) {
  const std::string what = "list local routes through " + ifname;
  KIPVS_RETURN_IF_ERROR(validateIfname(ifname));
  StatusOr<LinkInfo> link = getLink(*rtnl_, ifname);
  if (!link.isOk()) return link.status().withContext("list local routes");
  StatusOr<std::vector<RouteInfo>> all = dumpOurRoutes(*rtnl_, link->index, what);
  if (!all.isOk()) return all.status();
  routesRead_ += all->size();
  std::set<ipvs::Address> out;
  for (const RouteInfo& r : *all) {
    const unsigned hostLen = r.dst.isV4() ? 32 : 128;
    if (r.table == RT_TABLE_LOCAL && r.type == RTN_LOCAL && r.protocol == kRouteProtocol && r.oif == link->index &&
        r.dstLen == hostLen) {
      out.insert(r.dst);
    }
  }
  return out;
}

std::vector<Status> NetlinkHostNetwork::addLocalRoutes(const std::string& ifname,
                                                       std::span<const ipvs::Address> addrs) {
  return changeRoutes(true, ifname, addrs);
}

std::vector<Status> NetlinkHostNetwork::deleteLocalRoutes(const std::string& ifname,
                                                          std::span<const ipvs::Address> addrs) {
  return changeRoutes(false, ifname, addrs);
}

Status NetlinkHostNetwork::bindAddress(const std::string& ifname, const ipvs::Address& addr) {
  return changeAddresses(true, ifname, std::span<const ipvs::Address>(&addr, 1)).front();
}

Status NetlinkHostNetwork::unbindAddress(const std::string& ifname, const ipvs::Address& addr) {
  return changeAddresses(false, ifname, std::span<const ipvs::Address>(&addr, 1)).front();
}

std::vector<Status> NetlinkHostNetwork::bindAddresses(const std::string& ifname,
                                                      std::span<const ipvs::Address> addrs) {
  return changeAddresses(true, ifname, addrs);
}

std::vector<Status> NetlinkHostNetwork::unbindAddresses(const std::string& ifname,
                                                        std::span<const ipvs::Address> addrs) {
  return changeAddresses(false, ifname, addrs);
}

Status NetlinkHostNetwork::setSysctl(const std::string& path, const std::string& value) {
  StatusOr<std::string> file = sysctlFile(options_.procSysRoot, path);
  if (!file.isOk()) return file.status();
  const std::string what = "write \"" + value + "\" to " + *file;
  const int fd = ::open(file->c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::kernel(errno, what);
  // One write(2): /proc/sys parses what a single write hands it.
  ssize_t n;
  do {
    n = ::write(fd, value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  const int writeErrno = errno;
  ::close(fd);
  if (n < 0) return Status::kernel(writeErrno, what);
  if (static_cast<size_t>(n) != value.size()) return Status::error(Code::kIo, what + ": short write", EIO);
  return Status::ok();
}

StatusOr<std::string> NetlinkHostNetwork::getSysctl(const std::string& path) {
  StatusOr<std::string> file = sysctlFile(options_.procSysRoot, path);
  if (!file.isOk()) return file.status();
  StatusOr<std::string> read = readWholeFile(*file);
  if (!read.isOk()) return read.status();
  std::string out = std::move(*read);
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return out;
}

StatusOr<std::vector<ipvs::Address>> NetlinkHostNetwork::nodeAddresses(const std::string& excludeIfname) {
  const std::string what = "list node addresses";
  StatusOr<std::vector<LinkInfo>> links = dumpLinks(*rtnl_, what);
  if (!links.isOk()) return links.status();
  std::set<int> skip;  // the excluded link (by name: its index is not known otherwise)
  for (const LinkInfo& l : *links) {
    if (l.name == excludeIfname) skip.insert(l.index);
  }
  StatusOr<std::vector<AddrInfo>> addrs = dumpAddresses(*rtnl_, what);
  if (!addrs.isOk()) return addrs.status();
  std::vector<ipvs::Address> out;
  for (const AddrInfo& a : *addrs) {
    if (skip.count(a.ifindex) || (a.flags & IFA_F_DADFAILED) || !isNodeAddressCandidate(a.address)) continue;
    out.push_back(a.address);
  }
  return out;
}

StatusOr<std::string> NetlinkHostNetwork::kernelRelease() {
  utsname u{};
  if (::uname(&u) != 0) return Status::kernel(errno, "uname");
  return std::string(u.release);
}

StatusOr<std::string> NetlinkHostNetwork::recordPath() {
  if (recordPath_.empty()) {
    StatusOr<std::string> path = ownedRecordPath(options_.stateDir);
    if (!path) return path.status();
    recordPath_ = std::move(*path);
  }
  return recordPath_;
}

StatusOr<std::set<ipvs::ServiceKey>> NetlinkHostNetwork::ownedRecord() {
  StatusOr<std::string> path = recordPath();
  if (!path) return path.status();
  return readOwnedRecord(*path);
}

Status NetlinkHostNetwork::storeOwnedRecord(const std::set<ipvs::ServiceKey>& keys) {
  StatusOr<std::string> path = recordPath();
  if (!path) return path.status();
  return writeOwnedRecord(*path, keys);
}

}  // namespace kipvs::controller
