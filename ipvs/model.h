#pragma once
// The IPVS table as plain values: no kernel, no netlink. Both the desired table
// (computed from Kubernetes objects) and the actual one (dumped from the kernel)
// are expressed in these types and normalized the same way, so that "equal"
// means equal and a converged table plans to nothing.

#include <array>
#include <bit>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ipvs/default_box.h"
#include "netlink/status.h"

namespace kipvs::ipvs {

enum class Family : uint16_t { kV4 = 2 /*AF_INET*/, kV6 = 10 /*AF_INET6*/ };

// An IPv4 or IPv6 address. IPv4 lives in the first 4 bytes, the rest zero
// (the layout of union nf_inet_addr on the wire).
struct Address {
  Family family = Family::kV4;
  std::array<uint8_t, 16> bytes{};

  static StatusOr<Address> parse(std::string_view text);  // "10.0.0.1", "fd00::1"
  static Address v4(uint32_t hostOrder);
  std::string toString() const;        // "10.0.0.1", "fd00::1"
  std::string toBracketed() const;     // "10.0.0.1", "[fd00::1]" (for host:port)
  size_t size() const { return family == Family::kV4 ? 4 : 16; }
  bool isV4() const { return family == Family::kV4; }
  bool isUnspecified() const;          // 0.0.0.0 / ::
  bool isV4Mapped() const;             // ::ffff:a.b.c.d (IPv6)
  // Family, then the bytes in order (what the defaulted operators did), as two
  // 64-bit loads instead of a memcmp call: every map of services and dests
  // compares addresses, and a call per compare showed in profiles.
  std::strong_ordering operator<=>(const Address& o) const {
    if (auto c = family <=> o.family; c != 0) return c;
    if (auto c = half(0) <=> o.half(0); c != 0) return c;
    return half(1) <=> o.half(1);
  }
  bool operator==(const Address& o) const {
    return family == o.family && rawHalf(0) == o.rawHalf(0) && rawHalf(1) == o.rawHalf(1);
  }

 private:
  uint64_t rawHalf(int i) const {
    uint64_t v;
    std::memcpy(&v, bytes.data() + 8 * i, 8);
    return v;
  }
  uint64_t half(int i) const {  // as a big-endian number, so that it orders like the bytes
    return std::endian::native == std::endian::little ? __builtin_bswap64(rawHalf(i)) : rawHalf(i);
  }
};

enum class Protocol : uint16_t { kTcp = 6, kUdp = 17, kSctp = 132 };
const char* protocolName(Protocol p);                        // "TCP"; "?" for any other
bool isKnownProtocol(Protocol p);                            // TCP, UDP or SCTP
std::string protocolLabel(Protocol p);                       // "TCP"; "IP_1" for any other, as /proc/net/ip_vs
std::optional<Protocol> parseProtocol(std::string_view s);   // "TCP"/"tcp"

// IP_VS_SVC_F_* flags.
inline constexpr uint32_t kSvcFlagPersistent = 0x0001;
inline constexpr uint32_t kSvcFlagHashed = 0x0002;  // kernel-internal; set in every dump
inline constexpr uint32_t kSvcFlagOnePacket = 0x0004;
inline constexpr uint32_t kSvcFlagSched1 = 0x0008;  // sh-fallback / mh-fallback
inline constexpr uint32_t kSvcFlagSched2 = 0x0010;  // sh-port / mh-port
inline constexpr uint32_t kSvcFlagSched3 = 0x0020;

// A virtual server: (family, protocol, address, port), or (family, fwmark)
// when fwmark != 0 (then protocol/address/port are zero).
struct ServiceKey {
  Family family = Family::kV4;
  Protocol protocol = Protocol::kTcp;
  Address address;
  uint16_t port = 0;  // host order
  uint32_t fwmark = 0;

  static ServiceKey tcp(const Address& a, uint16_t port) { return make(Protocol::kTcp, a, port); }
  static ServiceKey make(Protocol p, const Address& a, uint16_t port) {
    ServiceKey k;
    k.family = a.family;
    k.protocol = p;
    k.address = a;
    k.port = port;
    return k;
  }
  static ServiceKey mark(Family f, uint32_t mark) {
    ServiceKey k;
    k.family = f;
    k.fwmark = mark;
    k.protocol = Protocol::kTcp;
    k.address.family = f;
    return k;
  }
  bool isFwmark() const { return fwmark != 0; }
  std::string toString() const;  // "TCP 10.0.0.1:80", "TCP [fd00::1]:80", "FWM 5 IPv4"
  auto operator<=>(const ServiceKey&) const = default;
  bool operator==(const ServiceKey&) const = default;
};

struct ServiceSpec {
  std::string scheduler = "rr";
  uint32_t flags = 0;        // kSvcFlag*, HASHED always masked out
  uint32_t timeout = 0;      // persistence timeout, seconds (0 unless persistent)
  uint32_t netmask = 0;      // IPv4: the mask in host order (0xffffff00 = /24; the codec
                             // writes it big-endian); IPv6: prefix length. 0 = default (/32, /128)
  std::string pe;            // persistence engine ("sip"), empty for none
  bool operator==(const ServiceSpec&) const = default;
};

enum class FwdMethod : uint32_t { kMasq = 0, kLocal = 1, kTunnel = 2, kRoute = 3, kBypass = 4 };
const char* fwdMethodName(FwdMethod m);  // "masq", "local", "tunnel", "route", "bypass"

// IP_VS_CONN_F_TUNNEL_TYPE_*
enum class TunnelType : uint8_t { kIpip = 0, kGue = 1, kGre = 2 };
inline constexpr uint16_t kTunFlagNoCsum = 0x0000;
inline constexpr uint16_t kTunFlagCsum = 0x0001;
inline constexpr uint16_t kTunFlagRemCsum = 0x0002;

struct DestKey {
  Address address;   // may differ in family from the service only with tunnel forwarding
  uint16_t port = 0; // host order
  std::string toString() const;  // "10.0.1.1:8080", "[fd00::1]:8080"
  auto operator<=>(const DestKey&) const = default;
  bool operator==(const DestKey&) const = default;
};

struct DestSpec {
  FwdMethod fwd = FwdMethod::kMasq;
  int32_t weight = 1;
  uint32_t upperThreshold = 0;
  uint32_t lowerThreshold = 0;
  TunnelType tunType = TunnelType::kIpip;
  uint16_t tunPort = 0;   // host order
  uint16_t tunFlags = 0;
  bool operator==(const DestSpec&) const = default;
};

struct Stats {
  uint64_t conns = 0, inPkts = 0, outPkts = 0, inBytes = 0, outBytes = 0;
  uint64_t cps = 0, inPps = 0, outPps = 0, inBps = 0, outBps = 0;
  bool operator==(const Stats&) const = default;
};

using StatsBox = DefaultBox<Stats>;

// Read-only counters the kernel reports for a destination.
struct DestCounters {
  uint32_t activeConns = 0;
  uint32_t inactiveConns = 0;
  uint32_t persistentConns = 0;
  StatsBox stats;
  bool operator==(const DestCounters&) const = default;
};

struct DestState {
  DestSpec spec;
  DestCounters counters;
};

struct ServiceState {
  ServiceSpec spec;
  std::map<DestKey, DestState> dests;
  Stats stats;
};

struct Table {
  std::map<ServiceKey, ServiceState> services;
  size_t destCount() const;
};

// tcp / tcpfin / udp timeouts in seconds (0 = leave unchanged when setting).
struct Timeouts {
  uint32_t tcp = 0, tcpFin = 0, udp = 0;
  bool operator==(const Timeouts&) const = default;
};

struct Info {
  uint32_t version = 0;        // e.g. 0x010201 = 1.2.1
  uint32_t connTableSize = 0;
  std::string versionString() const;
};

// Canonical form of desired state: HASHED masked, the default netmask filled
// in (/32 or /128), timeout zeroed unless persistent, fwmark keys stripped of
// address/port; dests: tunnel fields zeroed unless tunnelling, and (as
// ipvsadm does) the service port for route/tunnel dests of non-fwmark
// services, since the kernel cannot rewrite the port on those paths. A table
// read from the kernel takes normalizeRead (below).
void normalize(ServiceKey& key, ServiceSpec& spec);
void normalize(const ServiceKey& service, DestKey& key, DestSpec& spec);
void normalize(DestSpec& spec);  // the dest's part that does not depend on its service
void normalize(Table& table);
// normalize(Table&) for a table read from the kernel, except for what the
// kernel really holds: real-server keys stay as read (the kernel keeps a
// route/tunnel real server on the port it was given; ipvsadm and kipvs give
// the service's, a hand-made or another tool's may not: re-keyed, it could
// never be deleted, ENOENT folded as done), and an IPv4 netmask of 0 stays 0
// (a /0 to the kernel, not the default /32).
void normalizeRead(Table& table);
// One service's dests (normalize(Table&) does this for each service).
void normalizeDests(const ServiceKey& service, std::map<DestKey, DestState>& dests);

// Adds (or replaces) a dest read from the kernel. The kernel lists a
// service's dests newest first and kipvs adds them in key order, so they
// mostly arrive in descending key order: the ends are tried before a search.
void putReadDest(std::map<DestKey, DestState>& dests, const DestKey& key, const DestState& state);

// A real-server address the kernel accepts (ip_vs_new_dest: unicast; not
// 0/8, multicast, limited broadcast, ::, fe80::/10).
bool isUnicastDestAddress(const Address& a);

// Reject, before sending, what the kernel would reject (mirrors ip_vs_ctl.c).
Status validateService(const ServiceKey& key, const ServiceSpec& spec);
Status validateDest(const ServiceKey& service, const DestKey& key, const DestSpec& spec);

}  // namespace kipvs::ipvs

template <>
struct std::hash<kipvs::ipvs::Address> {
  size_t operator()(const kipvs::ipvs::Address& a) const noexcept;
};
template <>
struct std::hash<kipvs::ipvs::ServiceKey> {
  size_t operator()(const kipvs::ipvs::ServiceKey& k) const noexcept;
};
template <>
struct std::hash<kipvs::ipvs::DestKey> {
  size_t operator()(const kipvs::ipvs::DestKey& k) const noexcept;
};
