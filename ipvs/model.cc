#include "ipvs/model.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <vector>

namespace kipvs::ipvs {

namespace {

constexpr size_t kSchedNameMax = 15;  // IP_VS_SCHEDNAME_MAXLEN - 1
constexpr size_t kPeNameMax = 15;     // IP_VS_PENAME_MAXLEN - 1
constexpr uint32_t kKnownSvcFlags =
    kSvcFlagPersistent | kSvcFlagHashed | kSvcFlagOnePacket | kSvcFlagSched1 | kSvcFlagSched2 | kSvcFlagSched3;
// The kernel keeps timeout * HZ in an unsigned int; stay clear of overflow at HZ=1000.
constexpr uint32_t kMaxPersistTimeout = 0xffffffffu / 1000;

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

// Dotted-quad IPv4 in its one strict form (four decimal groups of 1-3 digits,
// no leading zeros, each <= 255), which is what inet_pton(AF_INET) accepts,
// without the copy to a NUL-terminated buffer and in about two thirds of
// inet_pton's instructions (callgrind: ~170 against ~250 per address).
// Kubernetes input carries 100,000s of these. It only ever accepts; anything
// else goes to inet_pton, which decides.
bool parseDottedQuad(std::string_view s, uint8_t* out) {
  const char* p = s.data();
  const char* const end = p + s.size();
  auto digit = [&](unsigned& d) { return p != end && (d = static_cast<unsigned char>(*p) - unsigned('0')) <= 9; };
  for (int group = 0; group < 4; ++group) {
    if (group > 0 && (p == end || *p++ != '.')) return false;
    unsigned v, d;
    if (!digit(v)) return false;
    ++p;
    if (digit(d)) {
      if (v == 0) return false;  // a leading zero
      v = v * 10 + d;
      ++p;
      if (digit(d)) {
        v = v * 10 + d;
        ++p;
        if (v > 255) return false;
      }
    }
    out[group] = static_cast<uint8_t>(v);
  }
  return p == end;
}

}  // namespace

StatusOr<Address> Address::parse(std::string_view text) {
  Address a;
  if (parseDottedQuad(text, a.bytes.data())) {
    a.family = Family::kV4;
    return a;
  }
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) {
    return Status::invalid("invalid IP address \"" + std::string(text) + "\"");
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
    a.family = Family::kV4;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    a.family = Family::kV6;
    return a;
  }
  return Status::invalid("invalid IP address \"" + std::string(text) + "\"");
}

Address Address::v4(uint32_t hostOrder) {
  Address a;
  a.family = Family::kV4;
  a.bytes[0] = static_cast<uint8_t>(hostOrder >> 24);
  a.bytes[1] = static_cast<uint8_t>(hostOrder >> 16);
  a.bytes[2] = static_cast<uint8_t>(hostOrder >> 8);
  a.bytes[3] = static_cast<uint8_t>(hostOrder);
  return a;
}

std::string Address::toString() const {
  if (isV4()) {  // by hand: inet_ntop goes through sprintf (a reconcile prints 10,000s of these)
    char buf[16];
    char* p = buf;
    for (size_t i = 0; i < 4; ++i) {
      if (i) *p++ = '.';
      const unsigned b = bytes[i];
      if (b >= 100) *p++ = static_cast<char>('0' + b / 100);
      if (b >= 10) *p++ = static_cast<char>('0' + b / 10 % 10);
      *p++ = static_cast<char>('0' + b % 10);
    }
    return std::string(buf, static_cast<size_t>(p - buf));
  }
  char buf[INET6_ADDRSTRLEN];
  const char* r = inet_ntop(isV4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return r ? std::string(r) : std::string("?");
}

std::string Address::toBracketed() const { return isV4() ? toString() : "[" + toString() + "]"; }

bool Address::isV4Mapped() const {
  return !isV4() && std::all_of(bytes.begin(), bytes.begin() + 10, [](uint8_t x) { return x == 0; }) &&
         bytes[10] == 0xff && bytes[11] == 0xff;
}

bool Address::isUnspecified() const {
  for (size_t i = 0; i < size(); ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

const char* protocolName(Protocol p) {
  switch (p) {
    case Protocol::kTcp:
      return "TCP";
    case Protocol::kUdp:
      return "UDP";
    case Protocol::kSctp:
      return "SCTP";
  }
  return "?";
}

bool isKnownProtocol(Protocol p) { return p == Protocol::kTcp || p == Protocol::kUdp || p == Protocol::kSctp; }

std::string protocolLabel(Protocol p) {
  return isKnownProtocol(p) ? protocolName(p) : "IP_" + std::to_string(static_cast<unsigned>(p));
}

std::optional<Protocol> parseProtocol(std::string_view s) {
  auto eq = [&](const char* n) {
    if (s.size() != std::strlen(n)) return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (std::toupper(static_cast<unsigned char>(s[i])) != n[i]) return false;
    }
    return true;
  };
  if (eq("TCP")) return Protocol::kTcp;
  if (eq("UDP")) return Protocol::kUdp;
  if (eq("SCTP")) return Protocol::kSctp;
  return std::nullopt;
}

std::string ServiceKey::toString() const {
  if (isFwmark()) {
    return "FWM " + std::to_string(fwmark) + (family == Family::kV4 ? " IPv4" : " IPv6");
  }
  return protocolLabel(protocol) + " " + address.toBracketed() + ":" + std::to_string(port);
}

const char* fwdMethodName(FwdMethod m) {
  switch (m) {
    case FwdMethod::kMasq:
      return "masq";
    case FwdMethod::kLocal:
      return "local";
    case FwdMethod::kTunnel:
      return "tunnel";
    case FwdMethod::kRoute:
      return "route";
    case FwdMethod::kBypass:
      return "bypass";
  }
  return "?";
}

std::string DestKey::toString() const { return address.toBracketed() + ":" + std::to_string(port); }

size_t Table::destCount() const {
  size_t n = 0;
  for (const auto& [k, s] : services) n += s.dests.size();
  return n;
}

std::string Info::versionString() const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%u.%u.%u", (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff);
  return buf;
}

void normalize(ServiceKey& key, ServiceSpec& spec) {
  if (key.isFwmark()) {
    key.protocol = Protocol::kTcp;  // the kernel files every fwmark service as TCP
    key.address = Address{};
    key.address.family = key.family;
    key.port = 0;
  } else {
    key.family = key.address.family;
  }
  spec.flags &= ~kSvcFlagHashed;
  if (!(spec.flags & kSvcFlagPersistent)) spec.timeout = 0;
  if (spec.netmask == 0) spec.netmask = key.family == Family::kV4 ? 0xffffffffu : 128;
}

void normalize(DestSpec& spec) {
  if (spec.fwd != FwdMethod::kTunnel) {
    spec.tunType = TunnelType::kIpip;
    spec.tunPort = 0;
    spec.tunFlags = 0;
  }
}

void normalize(const ServiceKey& service, DestKey& key, DestSpec& spec) {
  if (!service.isFwmark() && (spec.fwd == FwdMethod::kTunnel || spec.fwd == FwdMethod::kRoute)) {
    key.port = service.port;
  }
  normalize(spec);
}

namespace {

// Normalizes map keys in place; a key that changes is re-inserted (node
// handle, no copy). Keys almost never change, so this is one pass, no allocation.
template <typename Map, typename Fix>
void normalizeKeys(Map& m, Fix fix) {
  std::vector<typename Map::node_type> moved;
  for (auto it = m.begin(); it != m.end();) {
    typename Map::key_type key = it->first;
    fix(key, it->second);
    if (key == it->first) {
      ++it;
      continue;
    }
    auto next = std::next(it);
    auto node = m.extract(it);
    node.key() = key;
    moved.push_back(std::move(node));
    it = next;
  }
  for (auto& node : moved) m.insert(std::move(node));
}

}  // namespace

void normalizeDests(const ServiceKey& service, std::map<DestKey, DestState>& dests) {
  normalizeKeys(dests, [&service](DestKey& dk, DestState& ds) { normalize(service, dk, ds.spec); });
}

void putReadDest(std::map<DestKey, DestState>& dests, const DestKey& key, const DestState& state) {
  auto hint = dests.empty() || dests.rbegin()->first < key ? dests.end()
              : key < dests.begin()->first                 ? dests.begin()
                                                           : dests.lower_bound(key);
  dests.insert_or_assign(hint, key, state);
}

void normalize(Table& table) {
  normalizeKeys(table.services, [](ServiceKey& key, ServiceState& s) {
    normalize(key, s.spec);
    normalizeDests(key, s.dests);
  });
}

void normalizeRead(Table& table) {
  normalizeKeys(table.services, [](ServiceKey& key, ServiceState& s) {
    const uint32_t netmask = s.spec.netmask;
    normalize(key, s.spec);
    // An IPv4 netmask the kernel reports as 0 is a /0 (every client one
    // persistence template), not the default /32: kipvs must see it to fix it.
    // (IPv6 cannot hold 0: the kernel refuses a prefix outside 1..128.)
    if (key.family == Family::kV4) s.spec.netmask = netmask;
    for (auto& [dk, ds] : s.dests) normalize(ds.spec);  // the keys stay as read
  });
}

Status validateService(const ServiceKey& key, const ServiceSpec& spec) {
  // Messages are built only on failure: this runs for every desired entry.
  auto what = [&] { return "service " + key.toString(); };
  if (key.family != Family::kV4 && key.family != Family::kV6) {
    return Status::error(Code::kInvalid, what() + ": unknown address family", EAFNOSUPPORT);
  }
  if (!key.isFwmark()) {
    if (key.address.family != key.family) return Status::invalid(what() + ": address family differs from service family");
    if (key.protocol != Protocol::kTcp && key.protocol != Protocol::kUdp && key.protocol != Protocol::kSctp) {
      return Status::error(Code::kInvalid, what() + ": protocol must be TCP, UDP or SCTP", EPROTONOSUPPORT);
    }
  }
  if (spec.scheduler.empty() || spec.scheduler.size() > kSchedNameMax) {
    return Status::invalid(what() + ": scheduler name must be 1.." + std::to_string(kSchedNameMax) + " characters");
  }
  for (char c : spec.scheduler) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return Status::invalid(what() + ": invalid scheduler name \"" + spec.scheduler + "\"");
    }
  }
  if (spec.pe.size() > kPeNameMax) return Status::invalid(what() + ": persistence engine name too long");
  if (spec.flags & ~kKnownSvcFlags) return Status::invalid(what() + ": unknown service flags");
  if ((spec.flags & kSvcFlagPersistent) && spec.timeout > kMaxPersistTimeout) {
    return Status::invalid(what() + ": persistence timeout " + std::to_string(spec.timeout) + "s too large");
  }
  if (key.family == Family::kV6) {
    if (spec.netmask != 0 && (spec.netmask < 1 || spec.netmask > 128)) {
      return Status::invalid(what() + ": IPv6 persistence netmask must be a prefix length 1..128");
    }
  } else if (spec.netmask != 0) {
    // A contiguous mask: ones then zeros.
    uint32_t inv = ~spec.netmask;
    if ((inv & (inv + 1)) != 0) return Status::invalid(what() + ": IPv4 persistence netmask is not contiguous");
  }
  return Status::ok();
}

// The address classes ip_vs_new_dest refuses with EINVAL (see inet_addr_type /
// ipv6_addr_type there): not unicast. Link-local v6 is refused unless local;
// we refuse it outright, as a pod never has one as its endpoint address.
bool isUnicastDestAddress(const Address& a) {
  const auto& b = a.bytes;
  if (a.isV4()) {
    if (b[0] == 0) return false;                                                 // 0.0.0.0/8
    if (b[0] >= 224 && b[0] <= 239) return false;                                // multicast
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return false;  // limited broadcast
    return true;
  }
  if (a.isUnspecified()) return false;
  if (b[0] == 0xff) return false;                           // multicast
  if (a.isV4Mapped()) return false;  // ::ffff:0:0/96: ipv6_addr_type() gives it no IPV6_ADDR_UNICAST
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // fe80::/10
  return true;
}

Status validateDest(const ServiceKey& service, const DestKey& key, const DestSpec& spec) {
  auto what = [&] { return "dest " + key.toString() + " of service " + service.toString(); };
  if (key.address.family != Family::kV4 && key.address.family != Family::kV6) {
    return Status::error(Code::kInvalid, what() + ": unknown address family", EAFNOSUPPORT);
  }
  if (key.address.family != service.family && spec.fwd != FwdMethod::kTunnel) {
    return Status::invalid(what() + ": a destination of another address family needs tunnel forwarding");
  }
  if (!isUnicastDestAddress(key.address)) {
    return Status::invalid(what() + ": not a unicast address");
  }
  if (static_cast<uint32_t>(spec.fwd) > static_cast<uint32_t>(FwdMethod::kRoute)) {
    return Status::invalid(what() + ": forwarding method must be masq, local, tunnel or route");
  }
  if (spec.weight < 0) return Status::error(Code::kInvalid, what() + ": weight below zero", ERANGE);
  if (spec.lowerThreshold > spec.upperThreshold) {
    return Status::error(Code::kInvalid, what() + ": lower threshold above upper threshold", ERANGE);
  }
  if (static_cast<uint8_t>(spec.tunType) > static_cast<uint8_t>(TunnelType::kGre)) {
    return Status::invalid(what() + ": unknown tunnel type");
  }
  if (spec.fwd == FwdMethod::kTunnel && spec.tunType == TunnelType::kGue && spec.tunPort == 0) {
    return Status::invalid(what() + ": GUE tunnel needs a tunnel port");
  }
  if (spec.tunFlags & ~(kTunFlagCsum | kTunFlagRemCsum)) return Status::invalid(what() + ": unknown tunnel flags");
  return Status::ok();
}

}  // namespace kipvs::ipvs

size_t std::hash<kipvs::ipvs::Address>::operator()(const kipvs::ipvs::Address& a) const noexcept {
  uint64_t w0, w1;
  std::memcpy(&w0, a.bytes.data(), 8);
  std::memcpy(&w1, a.bytes.data() + 8, 8);
  uint64_t h = static_cast<uint64_t>(a.family);
  h = kipvs::ipvs::mix(h, w0);
  h = kipvs::ipvs::mix(h, w1);
  return static_cast<size_t>(h);
}

size_t std::hash<kipvs::ipvs::ServiceKey>::operator()(const kipvs::ipvs::ServiceKey& k) const noexcept {
  uint64_t h = std::hash<kipvs::ipvs::Address>()(k.address);
  h = kipvs::ipvs::mix(h, (static_cast<uint64_t>(k.protocol) << 48) | (static_cast<uint64_t>(k.port) << 32) | k.fwmark);
  h = kipvs::ipvs::mix(h, static_cast<uint64_t>(k.family));
  return static_cast<size_t>(h);
}

size_t std::hash<kipvs::ipvs::DestKey>::operator()(const kipvs::ipvs::DestKey& k) const noexcept {
  return static_cast<size_t>(kipvs::ipvs::mix(std::hash<kipvs::ipvs::Address>()(k.address), k.port));
}
