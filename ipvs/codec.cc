#include "ipvs/codec.h"

#include <arpa/inet.h>
#include <linux/netlink.h>

#include <string>

namespace kipvs::ipvs::codec {

using netlink::Bytes;
using netlink::MessageWriter;

namespace {

using AttrSlot = std::optional<Bytes>;

Status parseError(const std::string& message) { return Status::error(Code::kParse, message); }

std::string lengthError(const char* what, size_t got, size_t want) {
  return std::string(what) + ": length " + std::to_string(got) + ", want " + std::to_string(want);
}

// Reads a fixed-size scalar; absent attributes leave `out` alone unless required.
template <typename T>
Status getScalar(const AttrSlot& a, const char* what, bool required, T& out) {
  if (!a) return required ? parseError(std::string("missing ") + what) : Status::ok();
  auto v = netlink::readScalar<T>(*a);
  if (!v) return parseError(lengthError(what, a->size(), sizeof(T)));
  out = *v;
  return Status::ok();
}

Status getBe16(const AttrSlot& a, const char* what, bool required, uint16_t& out) {
  if (!a) return required ? parseError(std::string("missing ") + what) : Status::ok();
  auto v = netlink::readBe16(*a);
  if (!v) return parseError(lengthError(what, a->size(), 2));
  out = *v;
  return Status::ok();
}

StatusOr<Family> toFamily(uint16_t af, const char* what) {
  if (af == static_cast<uint16_t>(Family::kV4)) return Family::kV4;
  if (af == static_cast<uint16_t>(Family::kV6)) return Family::kV6;
  return parseError(std::string(what) + ": unknown address family " + std::to_string(af));
}

// Addresses travel as 16 bytes whatever the family; accept a bare 4 for IPv4.
StatusOr<Address> getAddress(const AttrSlot& a, const char* what, Family family) {
  if (!a) return parseError(std::string("missing ") + what);
  Address out;
  out.family = family;
  if (a->size() == 16 || (family == Family::kV4 && a->size() == 4)) {
    std::copy(a->begin(), a->begin() + static_cast<std::ptrdiff_t>(out.size()), out.bytes.begin());
    return out;  // bytes past an IPv4 address stay zero: one canonical form
  }
  return parseError(lengthError(what, a->size(), 16));
}

Status getString(const AttrSlot& a, const char* what, bool required, std::string& out) {
  if (!a) return required ? parseError(std::string("missing ") + what) : Status::ok();
  out = netlink::readString(*a);
  return Status::ok();
}

// Stats may come as u32 (legacy STATS) or u64 (STATS64, and the byte counters
// of STATS); the length says which.
Status getCounter(const AttrSlot& a, const char* what, uint64_t& out) {
  if (!a) return Status::ok();
  if (auto v = netlink::readScalar<uint64_t>(*a)) {
    out = *v;
  } else if (auto v32 = netlink::readScalar<uint32_t>(*a)) {
    out = *v32;
  } else {
    return parseError(std::string(what) + ": length " + std::to_string(a->size()) + ", want 4 or 8");
  }
  return Status::ok();
}

StatusOr<Stats> statsFrom(const AttrSlot& stats64, const AttrSlot& stats, const char* owner) {
  if (stats64) {
    auto s = decodeStats(*stats64);
    if (!s) return s.status().withContext(std::string(owner) + " STATS64");
    return s;
  }
  if (stats) {
    auto s = decodeStats(*stats);
    if (!s) return s.status().withContext(std::string(owner) + " STATS");
    return s;
  }
  return Stats{};
}

void putKeyAttrs(MessageWriter& w, const ServiceKey& key) {
  w.putU16(IPVS_SVC_ATTR_AF, static_cast<uint16_t>(key.family));
  if (key.isFwmark()) {
    w.putU32(IPVS_SVC_ATTR_FWMARK, key.fwmark);
  } else {
    w.putU16(IPVS_SVC_ATTR_PROTOCOL, static_cast<uint16_t>(key.protocol));
    w.putBytes(IPVS_SVC_ATTR_ADDR, key.address.bytes.data(), key.address.bytes.size());
    w.putBe16(IPVS_SVC_ATTR_PORT, key.port);
  }
}

Status checkKey(const ServiceKey& key) {
  if (key.family != Family::kV4 && key.family != Family::kV6) {
    return Status::invalid("service family " + std::to_string(static_cast<int>(key.family)) + " is not IPv4/IPv6");
  }
  if (!key.isFwmark() && key.address.family != key.family) {
    return Status::invalid("service address family differs from the service family");
  }
  return Status::ok();
}

}  // namespace

Status putServiceKey(MessageWriter& w, const ServiceKey& key) {
  KIPVS_RETURN_IF_ERROR(checkKey(key));
  size_t nest = w.beginNest(IPVS_CMD_ATTR_SERVICE);
  putKeyAttrs(w, key);
  w.endNest(nest);
  return Status::ok();
}

Status putService(MessageWriter& w, const ServiceKey& key, const ServiceSpec& spec) {
  KIPVS_RETURN_IF_ERROR(checkKey(key));
  size_t nest = w.beginNest(IPVS_CMD_ATTR_SERVICE);
  putKeyAttrs(w, key);
  w.putString(IPVS_SVC_ATTR_SCHED_NAME, spec.scheduler);
  ip_vs_flags flags{spec.flags & ~kSvcFlagHashed, ~0u};  // mask ~0: the spec is the whole truth
  w.putBytes(IPVS_SVC_ATTR_FLAGS, &flags, sizeof flags);
  w.putU32(IPVS_SVC_ATTR_TIMEOUT, spec.timeout);
  if (key.family == Family::kV4) {
    w.putBe32(IPVS_SVC_ATTR_NETMASK, spec.netmask);  // a mask, network order
  } else {
    w.putU32(IPVS_SVC_ATTR_NETMASK, spec.netmask);   // a prefix length
  }
  if (!spec.pe.empty()) w.putString(IPVS_SVC_ATTR_PE_NAME, spec.pe);
  w.endNest(nest);
  return Status::ok();
}

void putDest(MessageWriter& w, const DestKey& key, const DestSpec* spec) {
  size_t nest = w.beginNest(IPVS_CMD_ATTR_DEST);
  w.putBytes(IPVS_DEST_ATTR_ADDR, key.address.bytes.data(), key.address.bytes.size());
  w.putBe16(IPVS_DEST_ATTR_PORT, key.port);
  w.putU16(IPVS_DEST_ATTR_ADDR_FAMILY, static_cast<uint16_t>(key.address.family));
  if (spec != nullptr) {
    w.putU32(IPVS_DEST_ATTR_FWD_METHOD, static_cast<uint32_t>(spec->fwd));
    w.putU32(IPVS_DEST_ATTR_WEIGHT, static_cast<uint32_t>(spec->weight));
    w.putU32(IPVS_DEST_ATTR_U_THRESH, spec->upperThreshold);
    w.putU32(IPVS_DEST_ATTR_L_THRESH, spec->lowerThreshold);
    // Sent always, as ipvsadm does; kernels before 5.3 ignore them.
    w.putU8(IPVS_DEST_ATTR_TUN_TYPE, static_cast<uint8_t>(spec->tunType));
    w.putBe16(IPVS_DEST_ATTR_TUN_PORT, spec->tunPort);
    w.putU16(IPVS_DEST_ATTR_TUN_FLAGS, spec->tunFlags);
  }
  w.endNest(nest);
}

void putTimeouts(MessageWriter& w, const Timeouts& t) {
  if (t.tcp != 0) w.putU32(IPVS_CMD_ATTR_TIMEOUT_TCP, t.tcp);
  if (t.tcpFin != 0) w.putU32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t.tcpFin);
  if (t.udp != 0) w.putU32(IPVS_CMD_ATTR_TIMEOUT_UDP, t.udp);
}

uint8_t commandFor(Op::Kind kind) {
  switch (kind) {
    case Op::Kind::kAddService:
      return IPVS_CMD_NEW_SERVICE;
    case Op::Kind::kUpdateService:
      return IPVS_CMD_SET_SERVICE;
    case Op::Kind::kDeleteService:
      return IPVS_CMD_DEL_SERVICE;
    case Op::Kind::kAddDest:
      return IPVS_CMD_NEW_DEST;
    case Op::Kind::kUpdateDest:
      return IPVS_CMD_SET_DEST;
    case Op::Kind::kDeleteDest:
      return IPVS_CMD_DEL_DEST;
  }
  return IPVS_CMD_UNSPEC;
}

Status encodeOp(MessageWriter& w, uint16_t familyId, uint16_t flags, uint32_t seq, const Op& op) {
  size_t mark = w.size();
  size_t count = w.messageCount();
  w.beginGenl(familyId, flags, seq, commandFor(op.kind), kGenlVersion);
  Status s;
  switch (op.kind) {
    case Op::Kind::kAddService:
    case Op::Kind::kUpdateService:
      s = putService(w, op.service, op.serviceSpec);
      break;
    case Op::Kind::kDeleteService:
      s = putServiceKey(w, op.service);
      break;
    case Op::Kind::kAddDest:
    case Op::Kind::kUpdateDest:
      s = putServiceKey(w, op.service);
      if (s.isOk()) putDest(w, op.dest, &op.destSpec);
      break;
    case Op::Kind::kDeleteDest:
      s = putServiceKey(w, op.service);
      if (s.isOk()) putDest(w, op.dest, nullptr);
      break;
    default:
      s = Status::invalid("unknown op kind " + std::to_string(static_cast<int>(op.kind)));
  }
  if (!s.isOk()) {
    w.truncate(mark, count);
    return s;
  }
  w.endMessage();
  return Status::ok();
}

StatusOr<Stats> decodeStats(Bytes nest) {
  AttrSlot a[IPVS_STATS_ATTR_MAX + 1];
  KIPVS_RETURN_IF_ERROR(netlink::parseAttrs(nest, a));  // PAD (alignment filler) is simply not read
  Stats s;
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_CONNS], "CONNS", s.conns));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_INPKTS], "INPKTS", s.inPkts));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_OUTPKTS], "OUTPKTS", s.outPkts));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_INBYTES], "INBYTES", s.inBytes));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_OUTBYTES], "OUTBYTES", s.outBytes));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_CPS], "CPS", s.cps));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_INPPS], "INPPS", s.inPps));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_OUTPPS], "OUTPPS", s.outPps));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_INBPS], "INBPS", s.inBps));
  KIPVS_RETURN_IF_ERROR(getCounter(a[IPVS_STATS_ATTR_OUTBPS], "OUTBPS", s.outBps));
  return s;
}

StatusOr<ServiceEntry> decodeService(Bytes nest, WithStats withStats) {
  AttrSlot a[IPVS_SVC_ATTR_MAX + 1];
  Status st = netlink::parseAttrs(nest, a);
  if (!st.isOk()) return st.withContext("service");

  ServiceEntry e;
  uint16_t af = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_AF], "service AF", true, af));
  auto family = toFamily(af, "service AF");
  if (!family) return family.status();

  uint32_t fwmark = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_FWMARK], "service FWMARK", false, fwmark));
  if (fwmark != 0) {
    e.key = ServiceKey::mark(*family, fwmark);
  } else {
    uint16_t proto = 0;
    KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_PROTOCOL], "service PROTOCOL", true, proto));
    // Any protocol is read as it is: the kernel takes one kipvs never makes
    // (ICMP, from a tool speaking netlink), and a table read that failed on it
    // would stop every reconcile. Such a service is foreign; it is left alone.
    auto addr = getAddress(a[IPVS_SVC_ATTR_ADDR], "service ADDR", *family);
    if (!addr) return addr.status();
    uint16_t port = 0;
    KIPVS_RETURN_IF_ERROR(getBe16(a[IPVS_SVC_ATTR_PORT], "service PORT", true, port));
    e.key = ServiceKey::make(static_cast<Protocol>(proto), *addr, port);
  }

  KIPVS_RETURN_IF_ERROR(getString(a[IPVS_SVC_ATTR_SCHED_NAME], "service SCHED_NAME", true, e.spec.scheduler));
  KIPVS_RETURN_IF_ERROR(getString(a[IPVS_SVC_ATTR_PE_NAME], "service PE_NAME", false, e.spec.pe));
  ip_vs_flags flags{};
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_FLAGS], "service FLAGS", true, flags));
  e.spec.flags = flags.flags & ~kSvcFlagHashed;  // kernel-internal, set in every dump
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_TIMEOUT], "service TIMEOUT", true, e.spec.timeout));
  uint32_t netmask = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_SVC_ATTR_NETMASK], "service NETMASK", true, netmask));
  e.spec.netmask = *family == Family::kV4 ? ntohl(netmask) : netmask;

  if (withStats == WithStats::kNo) return e;
  auto stats = statsFrom(a[IPVS_SVC_ATTR_STATS64], a[IPVS_SVC_ATTR_STATS], "service");
  if (!stats) return stats.status();
  e.stats = *stats;
  return e;
}

StatusOr<DestEntry> decodeDest(Bytes nest, Family serviceFamily, WithStats withStats) {
  AttrSlot a[IPVS_DEST_ATTR_MAX + 1];
  Status st = netlink::parseAttrs(nest, a);
  if (!st.isOk()) return st.withContext("dest");

  DestEntry e;
  Family family = serviceFamily;
  if (a[IPVS_DEST_ATTR_ADDR_FAMILY]) {
    uint16_t af = 0;
    KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_ADDR_FAMILY], "dest ADDR_FAMILY", true, af));
    auto f = toFamily(af, "dest ADDR_FAMILY");
    if (!f) return f.status();
    family = *f;
  }
  auto addr = getAddress(a[IPVS_DEST_ATTR_ADDR], "dest ADDR", family);
  if (!addr) return addr.status();
  e.key.address = *addr;
  KIPVS_RETURN_IF_ERROR(getBe16(a[IPVS_DEST_ATTR_PORT], "dest PORT", true, e.key.port));

  uint32_t fwd = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_FWD_METHOD], "dest FWD_METHOD", true, fwd));
  // The kernel only masks it (5..7 are kept as given): read as it is, as the
  // protocol above, and rewritten by the plan if a Service wants that dest.
  e.spec.fwd = static_cast<FwdMethod>(fwd & IP_VS_CONN_F_FWD_MASK);
  uint32_t weight = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_WEIGHT], "dest WEIGHT", true, weight));
  e.spec.weight = static_cast<int32_t>(weight);
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_U_THRESH], "dest U_THRESH", true, e.spec.upperThreshold));
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_L_THRESH], "dest L_THRESH", true, e.spec.lowerThreshold));

  uint8_t tunType = 0;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_TUN_TYPE], "dest TUN_TYPE", false, tunType));
  e.spec.tunType = static_cast<TunnelType>(tunType);
  KIPVS_RETURN_IF_ERROR(getBe16(a[IPVS_DEST_ATTR_TUN_PORT], "dest TUN_PORT", false, e.spec.tunPort));
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_DEST_ATTR_TUN_FLAGS], "dest TUN_FLAGS", false, e.spec.tunFlags));

  KIPVS_RETURN_IF_ERROR(
      getScalar(a[IPVS_DEST_ATTR_ACTIVE_CONNS], "dest ACTIVE_CONNS", false, e.counters.activeConns));
  KIPVS_RETURN_IF_ERROR(
      getScalar(a[IPVS_DEST_ATTR_INACT_CONNS], "dest INACT_CONNS", false, e.counters.inactiveConns));
  KIPVS_RETURN_IF_ERROR(
      getScalar(a[IPVS_DEST_ATTR_PERSIST_CONNS], "dest PERSIST_CONNS", false, e.counters.persistentConns));
  if (withStats == WithStats::kNo) return e;
  auto stats = statsFrom(a[IPVS_DEST_ATTR_STATS64], a[IPVS_DEST_ATTR_STATS], "dest");
  if (!stats) return stats.status();
  e.counters.stats = *stats;
  return e;
}

StatusOr<ServiceEntry> decodeServiceMessage(Bytes attrs, WithStats stats) {
  AttrSlot a[IPVS_CMD_ATTR_MAX + 1];
  KIPVS_RETURN_IF_ERROR(netlink::parseAttrs(attrs, a));
  if (!a[IPVS_CMD_ATTR_SERVICE]) return parseError("service message without IPVS_CMD_ATTR_SERVICE");
  return decodeService(*a[IPVS_CMD_ATTR_SERVICE], stats);
}

StatusOr<DestEntry> decodeDestMessage(Bytes attrs, Family serviceFamily, WithStats stats) {
  AttrSlot a[IPVS_CMD_ATTR_MAX + 1];
  KIPVS_RETURN_IF_ERROR(netlink::parseAttrs(attrs, a));
  if (!a[IPVS_CMD_ATTR_DEST]) return parseError("dest message without IPVS_CMD_ATTR_DEST");
  return decodeDest(*a[IPVS_CMD_ATTR_DEST], serviceFamily, stats);
}

StatusOr<Timeouts> decodeTimeouts(Bytes attrs) {
  AttrSlot a[IPVS_CMD_ATTR_MAX + 1];
  KIPVS_RETURN_IF_ERROR(netlink::parseAttrs(attrs, a));
  Timeouts t;
  // A kernel built without TCP or UDP support leaves that timeout out.
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_CMD_ATTR_TIMEOUT_TCP], "TIMEOUT_TCP", false, t.tcp));
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN], "TIMEOUT_TCP_FIN", false, t.tcpFin));
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_CMD_ATTR_TIMEOUT_UDP], "TIMEOUT_UDP", false, t.udp));
  return t;
}

StatusOr<Info> decodeInfo(Bytes attrs) {
  AttrSlot a[IPVS_INFO_ATTR_MAX + 1];
  KIPVS_RETURN_IF_ERROR(netlink::parseAttrs(attrs, a));
  Info info;
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_INFO_ATTR_VERSION], "info VERSION", true, info.version));
  KIPVS_RETURN_IF_ERROR(getScalar(a[IPVS_INFO_ATTR_CONN_TAB_SIZE], "info CONN_TAB_SIZE", true, info.connTableSize));
  return info;
}

}  // namespace kipvs::ipvs::codec
