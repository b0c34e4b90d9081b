#include "controller/desired.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cctype>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "controller/helper_thread.h"

namespace kipvs::controller {

using ipvs::Address;
using ipvs::DestKey;
using ipvs::DestSpec;
using ipvs::DestState;
using ipvs::Family;
using ipvs::Protocol;
using ipvs::ServiceKey;
using ipvs::ServiceState;

// --- Kubernetes IPs ------------------------------------------------------------

namespace {

// Go 1.16's parseIPv4, which ParseIPSloppy keeps: four decimal fields of any
// length, each at most 255, leading zeros allowed (and not octal).
bool parseSloppyDottedQuad(std::string_view s, uint8_t* out) {
  size_t i = 0;
  for (int field = 0; field < 4; ++field) {
    if (field > 0) {
      if (i == s.size() || s[i] != '.') return false;
      ++i;
    }
    const size_t start = i;
    unsigned v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
      if (v > 255) return false;
      ++i;
    }
    if (i == start) return false;
    out[field] = static_cast<uint8_t>(v);
  }
  return i == s.size();
}

bool startsWithMappedPrefix(std::string_view s) {
  constexpr std::string_view kPrefix = "::ffff:";
  if (s.size() <= kPrefix.size()) return false;
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != kPrefix[i]) return false;
  }
  return true;
}

}  // namespace

StatusOr<Address> parseKubernetesIp(std::string_view text) {
  StatusOr<Address> a = Address::parse(text);  // the canonical forms, nearly every address
  if (a) {
    if (a->isV4Mapped()) {
      Address v4;
      v4.family = Family::kV4;
      std::copy(a->bytes.begin() + 12, a->bytes.end(), v4.bytes.begin());
      return v4;
    }
    return a;
  }
  Address v4;
  v4.family = Family::kV4;
  std::string_view quad = startsWithMappedPrefix(text) ? text.substr(7) : text;
  if (parseSloppyDottedQuad(quad, v4.bytes.data())) return v4;
  return a.status();
}

// --- Cidr --------------------------------------------------------------------

StatusOr<Cidr> Cidr::parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Status::invalid("invalid CIDR \"" + std::string(text) + "\": no prefix length");
  }
  StatusOr<Address> a = Address::parse(text.substr(0, slash));
  if (!a) return Status::invalid("invalid CIDR \"" + std::string(text) + "\": bad address");
  std::string_view p = text.substr(slash + 1);
  int prefix = -1;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  int maxPrefix = a->isV4() ? 32 : 128;
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 0 || prefix > maxPrefix) {
    return Status::invalid("invalid CIDR \"" + std::string(text) + "\": bad prefix length");
  }
  Cidr c;
  c.base = *a;
  c.prefix = prefix;
  // Keep the network address only, as net.ParseCIDR does: "10.0.0.7/8" is 10.0.0.0/8.
  for (int i = 0; i < 16; ++i) {
    int bits = std::clamp(prefix - i * 8, 0, 8);
    c.base.bytes[i] &= static_cast<uint8_t>(0xff00 >> bits);
  }
  return c;
}

bool Cidr::contains(const Address& a) const {
  if (a.family != base.family) return false;
  for (int i = 0; i < 16; ++i) {
    int bits = std::clamp(prefix - i * 8, 0, 8);
    uint8_t mask = static_cast<uint8_t>(0xff00 >> bits);
    if ((a.bytes[i] & mask) != base.bytes[i]) return false;
  }
  return true;
}

std::string Cidr::toString() const { return base.toString() + "/" + std::to_string(prefix); }

// --- Schedulers --------------------------------------------------------------

namespace {

// net/netfilter/ipvs/ip_vs_<name>.c. twos is the newest (late 2022): a kernel
// without it answers ENOENT, which is the kernel's word (see desired.h).
constexpr std::string_view kSchedulers[] = {"rr",  "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
                                            "sh",  "sed", "nq", "fo",  "ovf",  "mh",    "twos"};

// Schedulers that look at a destination's weight only to skip weight 0
// (quiesced): rr, lc (least connections, weight ignored), dh (buckets filled
// one per dest). sh and mh fill their tables in proportion to weight.
bool ignoresWeights(std::string_view s) { return s == "rr" || s == "lc" || s == "dh"; }
// Schedulers where weight means something other than a share: fo sends
// everything to the heaviest dest, ovf uses weight as a connection limit.
bool weightIsNotAShare(std::string_view s) { return s == "fo" || s == "ovf"; }

}  // namespace

bool isKnownScheduler(std::string_view name) {
  return std::find(std::begin(kSchedulers), std::end(kSchedulers), name) != std::end(kSchedulers);
}

namespace {

// --- Annotations and labels --------------------------------------------------

constexpr std::string_view kLabelHeadless = "service.kubernetes.io/headless";
constexpr std::string_view kLabelProxyName = "service.kubernetes.io/service-proxy-name";
constexpr std::string_view kAnnScheduler = "kipvs.io/scheduler";
constexpr std::string_view kAnnSchedulerFlags = "kipvs.io/scheduler-flags";
constexpr std::string_view kAnnZoneWeights = "kipvs.io/zone-weights";

constexpr int64_t kDefaultAffinityTimeout = 10800;  // core/v1 DefaultClientIPServiceAffinitySeconds
constexpr int64_t kMaxAffinityTimeout = 86400;      // core/v1 MaxClientIPServiceAffinitySeconds

// Precedence when two Services claim one virtual server. Addresses the API
// server allocates (ClusterIP, nodePort) first, then what a controller
// writes (LB status), last what any user may write (externalIPs: see
// CVE-2020-8554). Same rank: namespace/name order.
enum class VsKind : uint8_t { kClusterIP = 0, kNodePort = 1, kLoadBalancer = 2, kExternalIP = 3 };

const char* vsKindName(VsKind k) {
  switch (k) {
    case VsKind::kClusterIP:
      return "ClusterIP";
    case VsKind::kNodePort:
      return "NodePort";
    case VsKind::kLoadBalancer:
      return "LoadBalancer";
    case VsKind::kExternalIP:
      return "ExternalIP";
  }
  return "?";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits a comma list, dropping empty items ("a, b," -> a, b).
std::vector<std::string_view> splitList(std::string_view s) {
  std::vector<std::string_view> out;
  while (true) {
    size_t c = s.find(',');
    std::string_view item = trim(s.substr(0, c));
    if (!item.empty()) out.push_back(item);
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

}  // namespace

std::string kubeletNodeName(std::string_view host) {
  while (!host.empty() && std::isspace(static_cast<unsigned char>(host.front()))) host.remove_prefix(1);
  while (!host.empty() && std::isspace(static_cast<unsigned char>(host.back()))) host.remove_suffix(1);
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

// Kubernetes spells protocols in capitals only.
std::optional<Protocol> k8sProtocol(std::string_view s) {
  if (s == "TCP" || s.empty()) return Protocol::kTcp;  // the API server defaults "" to TCP
  if (s == "UDP") return Protocol::kUdp;
  if (s == "SCTP") return Protocol::kSctp;
  return std::nullopt;
}

struct ZoneWeights {
  int32_t same = 1;
  int32_t other = 1;
};

// "same=4,other=1"; a key left out keeps weight 1.
StatusOr<ZoneWeights> parseZoneWeights(std::string_view text) {
  ZoneWeights w;
  std::vector<std::string_view> items = splitList(text);
  if (items.empty()) return Status::invalid("empty");
  for (std::string_view item : items) {
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return Status::invalid("\"" + std::string(item) + "\" is not key=weight");
    std::string_view k = trim(item.substr(0, eq));
    std::string_view v = trim(item.substr(eq + 1));
    int64_t n = -1;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 0 || n > 65535) {
      return Status::invalid("weight \"" + std::string(v) + "\" is not an integer in 0..65535");
    }
    if (k == "same") {
      w.same = static_cast<int32_t>(n);
    } else if (k == "other") {
      w.other = static_cast<int32_t>(n);
    } else {
      return Status::invalid("unknown key \"" + std::string(k) + "\" (want same, other)");
    }
  }
  return w;
}

// --- EndpointSlices, validated once ------------------------------------------

struct EpInfo {
  Address address;
  const Endpoint* src = nullptr;
  bool ready = false, serving = false, terminating = false, local = false;
};

struct SlicePort {
  std::string_view name;
  Protocol protocol = Protocol::kTcp;
  uint16_t port = 0;
};

struct SliceInfo {
  const EndpointSlice* slice = nullptr;
  Family family = Family::kV4;
  std::vector<SlicePort> ports;  // usable ports only
  std::vector<EpInfo> endpoints; // usable endpoints only
};

// What ip_vs_new_dest accepts as a masq destination (ipvs::validateDest's
// rule, without building its message for each of 100k endpoints).
bool isUnicast(const Address& a) {
  const auto& b = a.bytes;
  if (a.isV4()) {
    if (b[0] == 0) return false;                                                     // 0.0.0.0/8
    if (b[0] >= 224 && b[0] <= 239) return false;                                    // multicast
    return !(b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255);              // broadcast
  }
  if (a.isUnspecified() || b[0] == 0xff) return false;  // ::, multicast
  return !(b[0] == 0xfe && (b[1] & 0xc0) == 0x80);      // fe80::/10
}

// Checks every endpoint of s once; bad ones become errors and are dropped.
SliceInfo indexSlice(const EndpointSlice& s, const NodeFacts& node, std::vector<ObjectError>& errors) {
  SliceInfo info;
  info.slice = &s;
  info.family = s.addressType == AddressType::kIPv6 ? Family::kV6 : Family::kV4;
  auto error = [&](std::string msg) { errors.push_back({"EndpointSlice", s.meta.key(), std::move(msg)}); };
  for (size_t i = 0; i < s.ports.size(); ++i) {
    const EndpointPort& p = s.ports[i];
    // kube-proxy skips nil names and nil/0 ports (endpointslicecache.go).
    if (!p.name || !p.port || *p.port == 0) continue;
    // Built on failure only: this runs for every port and endpoint of the cluster.
    auto where = [&] { return "ports[" + std::to_string(i) + "]"; };
    if (*p.port < 1 || *p.port > 65535) {
      error(where() + ".port " + std::to_string(*p.port) + " out of range 1..65535");
      continue;
    }
    std::optional<Protocol> proto = k8sProtocol(p.protocol);
    if (!proto) {
      error(where() + ".protocol \"" + p.protocol + "\" unknown (want TCP, UDP or SCTP)");
      continue;
    }
    info.ports.push_back({*p.name, *proto, static_cast<uint16_t>(*p.port)});
  }
  // By name and protocol: each Service port finds its slice ports by a
  // binary search (a Service may have thousands of ports).
  std::stable_sort(info.ports.begin(), info.ports.end(), [](const SlicePort& a, const SlicePort& b) {
    return a.name != b.name ? a.name < b.name : a.protocol < b.protocol;
  });
  info.endpoints.reserve(s.endpoints.size());
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    const Endpoint& e = s.endpoints[i];
    if (e.addresses.empty()) continue;  // kube-proxy ignores these too
    const std::string& text = e.addresses[0];
    auto where = [&] { return "endpoints[" + std::to_string(i) + "].addresses[0] \"" + text + "\""; };
    StatusOr<Address> a = parseKubernetesIp(text);
    if (!a) {
      error(where() + ": not an IP address");
      continue;
    }
    if (a->family != info.family) {
      error(where() + ": not an " + (info.family == Family::kV4 ? "IPv4" : "IPv6") + " address (addressType " +
            (info.family == Family::kV4 ? "IPv4" : "IPv6") + ")");
      continue;
    }
    if (!isUnicast(*a)) {
      error(where() + ": not a unicast address");
      continue;
    }
    EpInfo ep;
    ep.address = *a;
    ep.src = &e;
    ep.ready = e.conditions.isReady();
    ep.serving = e.conditions.isServing();
    ep.terminating = e.conditions.isTerminating();
    ep.local = !node.nodeName.empty() && e.nodeName == node.nodeName;
    info.endpoints.push_back(ep);
  }
  return info;
}

// --- Endpoint choice (pkg/proxy/topology.go) ----------------------------------

struct Cand {
  DestKey key;
  const EpInfo* ep = nullptr;
  size_t sliceRank = 0;  // slices sorted by name
};

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

enum class Topology { kNone, kSameNode, kSameZone };

// topologyModeFromHints: use hints only if every ready endpoint has one and
// at least one is for us; node hints before zone hints.
Topology topologyMode(const std::vector<Cand>& cands, const NodeFacts& node) {
  bool anyReady = false, allNode = true, forNode = false, allZone = true, forZone = false;
  for (const Cand& c : cands) {
    if (!c.ep->ready) continue;
    anyReady = true;
    const Endpoint& e = *c.ep->src;
    if (e.hintNodes().empty()) {
      allNode = false;
    } else if (!node.nodeName.empty() && contains(e.hintNodes(), node.nodeName)) {
      forNode = true;
    }
    if (e.hintZones().empty()) {
      allZone = false;
    } else if (!node.zone.empty() && contains(e.hintZones(), node.zone)) {
      forZone = true;
    }
  }
  if (!anyReady) return Topology::kNone;
  if (allNode && forNode) return Topology::kSameNode;
  if (allZone && forZone) return Topology::kSameZone;
  return Topology::kNone;
}

bool availableFor(const Cand& c, Topology t, const NodeFacts& node) {
  switch (t) {
    case Topology::kNone:
      return true;
    case Topology::kSameNode:
      return contains(c.ep->src->hintNodes(), node.nodeName);
    case Topology::kSameZone:
      return contains(c.ep->src->hintZones(), node.zone);
  }
  return false;
}

// Cluster policy: ready endpoints (topology applied); none -> serving and
// terminating ones, topology ignored.
std::vector<const Cand*> clusterEndpoints(const std::vector<Cand>& cands, const NodeFacts& node) {
  std::vector<const Cand*> out;
  Topology t = topologyMode(cands, node);
  for (const Cand& c : cands) {
    if (c.ep->ready && availableFor(c, t, node)) out.push_back(&c);
  }
  if (out.empty()) {
    for (const Cand& c : cands) {
      if (c.ep->serving && c.ep->terminating) out.push_back(&c);
    }
  }
  return out;
}

// Local policy: ready local endpoints; none -> serving and terminating local
// ones. No topology: local is already as close as it gets.
std::vector<const Cand*> localEndpoints(const std::vector<Cand>& cands) {
  std::vector<const Cand*> out;
  for (const Cand& c : cands) {
    if (c.ep->local && c.ep->ready) out.push_back(&c);
  }
  if (out.empty()) {
    for (const Cand& c : cands) {
      if (c.ep->local && c.ep->serving && c.ep->terminating) out.push_back(&c);
    }
  }
  return out;
}

// --- Per-Service work --------------------------------------------------------

// A virtual server one Service wants; it may lose to another Service's claim.
using DestMap = std::map<DestKey, DestState>;

// The real servers of one Service port in one family under one traffic
// policy, shared by the claims that use it (a ClusterIP and its NodePort,
// say). Computed when first asked for, after the claims are settled: a
// reconcile sends the virtual servers to the kernel first and computes these
// beside the writes.
struct DestSlot {
  const Service* svc = nullptr;
  std::string_view portName;  // in svc
  Protocol proto = Protocol::kTcp;
  Family family = Family::kV4;
  bool local = false;  // externalTrafficPolicy / internalTrafficPolicy Local
  // local, and no local endpoint: take the cluster's instead. kube-proxy's IPVS
  // mode does (kubernetes#97081) whenever the port reaches its endpoints by the
  // Cluster policy at all (ITP Cluster, or reachable from outside): pods on a
  // node without an endpoint can still use an ETP-Local LoadBalancer IP.
  bool clusterFallback = false;
  std::optional<ZoneWeights> zoneWeights;
  // kTodo -> kBusy (one thread claimed it) -> kDone (dests are there).
  enum : uint8_t { kTodo, kBusy, kDone };
  std::atomic<uint8_t> state{kTodo};
  // Winning claims yet to take the dests (fillDests' thread only): the last
  // one moves them, the others copy. 100k destinations copied once more
  // would be ~20 MB of fresh memory.
  size_t takers = 0;
  DestMap dests;
};

struct Claim {
  ServiceKey key;
  VsKind kind = VsKind::kClusterIP;
  // An invalid Service's: what it may have in the kernel. It takes part in
  // settling conflicts (an externalIP must not take an invalid Service's
  // ClusterIP over), and where it wins the virtual server is kept as it is.
  bool shadow = false;
  const Service* svc = nullptr;
  size_t seq = 0;  // global order of production: Services sorted, then ports, then addresses
  ipvs::ServiceSpec spec;
  std::shared_ptr<DestSlot> slot;
  // Made where the claim is (on the threads that share step 1's Services),
  // so that resolve() only moves strings: its origin and the Service's
  // "namespace/name" for Desired::services.
  VsOrigin origin;
  std::string serviceKey;
};

bool beats(const Claim& a, const Claim& b) {
  if (a.kind != b.kind) return a.kind < b.kind;
  // Of one rank, a valid Service's claim wins: an LB IP moved from an invalid
  // Service to another is the other's.
  if (a.shadow != b.shadow) return !a.shadow;
  return a.seq < b.seq;  // seq follows namespace/name order
}

struct Validated {
  std::vector<Address> clusterIps;
  std::vector<Address> externalIps;
  std::vector<Address> lbIps;
  std::vector<Protocol> protocols;  // per spec.ports index
  ipvs::ServiceSpec spec;
  std::optional<ZoneWeights> zoneWeights;
};

// Every per-Service rule that can reject the Service as a whole.
Status validateService(const Service& svc, const NodeFacts& node, Validated& v) {
  // ClusterIPs: clusterIPs when set (primary first), else clusterIP.
  std::vector<std::string> single;
  if (svc.clusterIPs.empty() && !svc.clusterIP.empty()) single.push_back(svc.clusterIP);
  for (const std::string& text : svc.clusterIPs.empty() ? single : svc.clusterIPs) {
    StatusOr<Address> a = parseKubernetesIp(text);
    if (!a || a->isUnspecified()) return Status::invalid("clusterIP \"" + text + "\" is not an IP address");
    for (const Address& b : v.clusterIps) {
      if (b.family == a->family) return Status::invalid("two clusterIPs of the same family");
    }
    v.clusterIps.push_back(*a);
  }
  for (const std::string& s : svc.externalIPs) {
    StatusOr<Address> a = parseKubernetesIp(s);
    if (!a || a->isUnspecified()) return Status::invalid("externalIP \"" + s + "\" is not an IP address");
    v.externalIps.push_back(*a);
  }
  for (const LoadBalancerIngress& in : svc.lbIngress) {
    if (in.ip.empty() || in.ipMode == "Proxy") continue;  // hostname-only, or the LB proxies itself
    StatusOr<Address> a = parseKubernetesIp(in.ip);
    if (!a || a->isUnspecified()) {
      return Status::invalid("status.loadBalancer.ingress ip \"" + in.ip + "\" is not an IP address");
    }
    v.lbIps.push_back(*a);
  }
  constexpr size_t kPairwisePorts = 16;
  std::set<std::pair<int64_t, Protocol>> seen;
  for (size_t i = 0; i < svc.ports.size(); ++i) {
    const ServicePort& p = svc.ports[i];
    std::string what = "port " + (p.name.empty() ? std::to_string(i) : "\"" + p.name + "\"");
    std::optional<Protocol> proto = k8sProtocol(p.protocol);
    if (!proto) return Status::invalid(what + ": unknown protocol \"" + p.protocol + "\"");
    if (p.port < 1 || p.port > 65535) {
      return Status::invalid(what + ": port " + std::to_string(p.port) + " out of range 1..65535");
    }
    if (p.nodePort < 0 || p.nodePort > 65535) {
      return Status::invalid(what + ": nodePort " + std::to_string(p.nodePort) + " out of range 0..65535");
    }
    // Pairwise for a few ports, a set for many (a Service may have thousands).
    bool duplicate = false;
    if (svc.ports.size() <= kPairwisePorts) {
      for (size_t j = 0; j < i && !duplicate; ++j) duplicate = svc.ports[j].port == p.port && v.protocols[j] == *proto;
    } else {
      duplicate = !seen.emplace(p.port, *proto).second;
    }
    if (duplicate) return Status::invalid(what + ": duplicate " + p.protocol + " port " + std::to_string(p.port));
    v.protocols.push_back(*proto);
  }

  const std::string* sched = svc.meta.annotation(kAnnScheduler);
  v.spec.scheduler = sched ? std::string(trim(*sched)) : node.defaultScheduler;
  if (!isKnownScheduler(v.spec.scheduler)) {
    return Status::invalid("unknown IPVS scheduler \"" + v.spec.scheduler + "\"" +
                           (sched ? " (annotation " + std::string(kAnnScheduler) + ")" : " (node default)"));
  }
  const std::string* flags = svc.meta.annotation(kAnnSchedulerFlags);
  // mh without the flags annotation hashes the source port too, as kube-proxy
  // sets it (its --ipvs-scheduler=mh): by address alone every connection of
  // one client (a gateway, a node's SNAT) lands on one pod. The annotation,
  // even empty, says exactly which flags.
  if (!flags && v.spec.scheduler == "mh") v.spec.flags |= ipvs::kSvcFlagSched2;
  if (flags) {
    for (std::string_view f : splitList(*flags)) {
      std::string_view family = f.substr(0, 2);  // "sh" / "mh"
      uint32_t bit = 0;
      if (f == "sh-fallback" || f == "mh-fallback") bit = ipvs::kSvcFlagSched1;
      if (f == "sh-port" || f == "mh-port") bit = ipvs::kSvcFlagSched2;
      if (bit == 0) {
        return Status::invalid("annotation " + std::string(kAnnSchedulerFlags) + ": unknown flag \"" +
                               std::string(f) + "\" (want sh-fallback, sh-port, mh-fallback, mh-port)");
      }
      if (family != v.spec.scheduler) {
        return Status::invalid("annotation " + std::string(kAnnSchedulerFlags) + ": flag \"" + std::string(f) +
                               "\" needs scheduler " + std::string(family) + ", not " + v.spec.scheduler);
      }
      v.spec.flags |= bit;
    }
  }
  if (svc.sessionAffinity == SessionAffinity::kClientIP) {
    int64_t t = svc.affinityTimeoutSeconds.value_or(kDefaultAffinityTimeout);
    if (t < 1 || t > kMaxAffinityTimeout) {
      return Status::invalid("sessionAffinityConfig.clientIP.timeoutSeconds " + std::to_string(t) +
                             " out of range 1..86400");
    }
    v.spec.flags |= ipvs::kSvcFlagPersistent;
    v.spec.timeout = static_cast<uint32_t>(t);
  }
  if (const std::string* zw = svc.meta.annotation(kAnnZoneWeights)) {
    StatusOr<ZoneWeights> w = parseZoneWeights(*zw);
    if (!w) return w.status().withContext("annotation " + std::string(kAnnZoneWeights) + " \"" + *zw + "\"");
    v.zoneWeights = *w;
  }
  return Status::ok();
}

// kube-proxy lists Services and EndpointSlices through one label selector
// (service-proxy-name and headless absent): an object so labelled is never
// seen, whether a Service or a slice (which the EndpointSlice controller
// labels as its Service).
bool labelledAway(const ObjectMeta& meta, const NodeFacts& node) {
  if (meta.label(kLabelHeadless)) return true;
  if (const std::string* proxy = meta.label(kLabelProxyName)) return node.proxyName.empty() || *proxy != node.proxyName;
  return false;
}

// Services kube-proxy would not program, without them being wrong.
bool skipped(const Service& svc, const NodeFacts& node) {
  if (svc.type == ServiceType::kExternalName) return true;
  if (labelledAway(svc.meta, node)) return true;
  // Headless: kube-proxy's ShouldSkipService. An unparsable clusterIP is not
  // headless but invalid: validation reports it.
  const std::string& primary = svc.clusterIPs.empty() ? svc.clusterIP : svc.clusterIPs.front();
  return primary.empty() || primary == "None";
}

}  // namespace

class DesiredBuilder::Impl {
 public:
  Impl(const Cluster& cluster, const NodeFacts& node, size_t parallelMinServices)
      : cluster_(cluster), node_(node), parallelMinServices_(parallelMinServices) {}

  // What service() produces: one per thread when the Services are split.
  struct Part {
    std::vector<Claim> claims;
    std::vector<ObjectError> errors;
    std::vector<std::string> notes;
    Kept kept;
  };

  Desired servers() {
    Desired d;
    d.errors = cluster_.errors;
    for (const ObjectError& e : d.errors) {
      const std::string ns = e.name.substr(0, e.name.find('/'));
      if (e.kind == "Service") {
        d.kept.everything = true;
      } else if (e.kind == "EndpointSlice" && ns != kUnknownNamespace) {
        d.kept.realServersIn.insert(ns);
      } else {
        // A slice whose namespace is unknown, or an item whose kind is (its
        // kind given twice, not a string, not an object; a List inside the
        // List that did not parse): it may be any Service or EndpointSlice.
        if (e.kind != "EndpointSlice") d.kept.everything = true;
        d.kept.realServersEverywhere = true;
      }
    }
    if (d.kept.realServersEverywhere) {
      d.notes.push_back("an object that did not parse may be any namespace's EndpointSlice, so no Service's real "
                        "servers are removed this run");
    } else {
      for (const std::string& ns : d.kept.realServersIn) {
        d.notes.push_back("namespace " + ns + ": an EndpointSlice did not parse, so its Services' real servers are "
                          "not removed this run");
      }
    }
    std::vector<const Service*> order;
    order.reserve(cluster_.services.size());
    for (const Service& s : cluster_.services) order.push_back(&s);
    auto byName = [](const Service* a, const Service* b) {
      // One three-way compare per field (std::tie's < compares a field twice).
      if (const int c = a->meta.ns.compare(b->meta.ns); c != 0) return c < 0;
      return a->meta.name < b->meta.name;
    };
    // kubectl lists objects sorted by namespace and name: one pass says so.
    if (!std::is_sorted(order.begin(), order.end(), byName)) std::sort(order.begin(), order.end(), byName);
    // Services are independent until resolve(): this thread and a helper
    // take runs of them in order from a shared cursor, each run into a Part
    // of its own, and the Parts are joined in order (seq renumbered), so the
    // result is the one-thread one. The helper, at the lowest priority, may
    // get no CPU at all: this thread then does every run instead of waiting
    // for it to do a fixed half.
    const size_t run = std::max<size_t>(16, order.size() / 64);
    std::vector<Part> parts((order.size() + run - 1) / run);
    shareOut(parts.size(), order.size() >= parallelMinServices_ && haveSpareCpu(), [&](size_t r) {
      for (size_t i = r * run; i < std::min(order.size(), (r + 1) * run); ++i) service(*order[i], parts[r]);
    });
    size_t claims = 0;
    for (const Part& part : parts) claims += part.claims.size();
    claims_.reserve(claims);
    for (Part& part : parts) {
      for (Claim& c : part.claims) {
        c.seq = claims_.size();
        claims_.push_back(&c);  // the parts outlive resolve()
      }
      d.errors.insert(d.errors.end(), std::make_move_iterator(part.errors.begin()),
                      std::make_move_iterator(part.errors.end()));
      d.notes.insert(d.notes.end(), std::make_move_iterator(part.notes.begin()),
                     std::make_move_iterator(part.notes.end()));
      d.kept.vips.merge(part.kept.vips);
      d.kept.addresses.merge(part.kept.addresses);
    }
    resolve(d);
    if (!d.kept.realServersIn.empty() && !d.kept.realServersEverywhere) {
      for (const auto& [key, origin] : d.origins) {
        if (d.kept.realServersIn.count(origin.service.substr(0, origin.service.find('/')))) {
          d.kept.realServers.insert(key);
        }
      }
    }
    claims_.clear();
    std::sort(d.errors.begin(), d.errors.end());
    std::sort(d.notes.begin(), d.notes.end());
    d.notes.erase(std::unique(d.notes.begin(), d.notes.end()), d.notes.end());
    return d;
  }

  std::vector<ObjectError> readSlices() {
    std::vector<ObjectError> errors = indexSlices();
    slicesRead_.store(true, std::memory_order_release);
    slicesRead_.notify_all();
    return errors;
  }

  // readSlices() on the helper's behalf: stopHelping() gives the errors.
  void readSlicesForFill() { sliceErrors_ = readSlices(); }

  // The helper starts at the second half; this thread goes on past the
  // first into whatever the helper has not taken (a slot is computed once,
  // by whichever thread takes it), so a starved helper costs no waiting.
  void computeAll() {
    std::thread worker;
    if (winners_.size() >= parallelMinServices_ && haveSpareCpu()) {
      worker = startHelper([this, from = winners_.size() / 2] {
        for (size_t i = from; i < winners_.size(); ++i) computeIfTodo(*winners_[i].second);
      });
    }
    for (size_t i = 0; i < winners_.size(); ++i) computeIfTodo(*winners_[i].second);
    if (worker.joinable()) worker.join();
  }

  void startHelping() {
    if (helper_.joinable() || slicesRead_) return;
    if (winners_.size() >= parallelMinServices_ && haveSpareCpu()) {
      helper_ = startHelper([this] {
        readSlicesForFill();
        for (size_t i = 0; i < winners_.size() && !stop_.load(std::memory_order_relaxed); ++i) {
          computeIfTodo(*winners_[i].second);
        }
      });
    }
    if (!helper_.joinable()) readSlicesForFill();
  }

  bool computeAhead() {
    awaitSlices();
    for (; ahead_ < winners_.size(); ++ahead_) {
      DestSlot& slot = *winners_[ahead_].second;
      if (slot.state.load(std::memory_order_relaxed) != DestSlot::kTodo) continue;
      computeIfTodo(slot);
      return true;
    }
    return false;
  }

  std::vector<ObjectError> stopHelping() {
    stop_ = true;
    if (helper_.joinable()) helper_.join();
    return std::move(sliceErrors_);
  }

  void fillDests(const ServiceKey& key, ServiceState& state) {
    auto it = std::lower_bound(winners_.begin(), winners_.end(), key,
                               [](const auto& w, const ServiceKey& k) { return w.first < k; });
    if (it == winners_.end() || it->first != key) return;
    DestSlot& slot = *it->second;
    if (slot.takers == 0) return;  // taken already
    awaitSlices();
    computeIfTodo(slot);
    // The helper has it: wait until it is there (one slot's work at most).
    for (uint8_t st = slot.state.load(std::memory_order_acquire); st != DestSlot::kDone;
         st = slot.state.load(std::memory_order_acquire)) {
      slot.state.wait(st, std::memory_order_acquire);
    }
    state.dests = --slot.takers == 0 ? std::move(slot.dests) : slot.dests;
    ipvs::normalizeDests(key, state.dests);
  }

  ~Impl() { stopHelping(); }

 private:
  std::vector<ObjectError> indexSlices() {
    std::vector<ObjectError> errors;
    slices_.reserve(cluster_.slices.size());
    for (const EndpointSlice& s : cluster_.slices) {
      if (s.addressType == AddressType::kFqdn) continue;  // kube-proxy never reads FQDN slices
      if (labelledAway(s.meta, node_)) continue;
      std::string_view svcName = s.serviceName();
      if (svcName.empty()) continue;  // not tied to a Service (kube-proxy logs and skips)
      slices_[s.meta.ns + "/" + std::string(svcName)].push_back(indexSlice(s, node_, errors));
    }
    for (auto& [k, v] : slices_) {
      std::sort(v.begin(), v.end(),
                [](const SliceInfo& a, const SliceInfo& b) { return a.slice->meta.name < b.slice->meta.name; });
    }
    return errors;
  }

  // An invalid Service's virtual servers, as far as its addresses and ports
  // parse, as shadow claims (Claim::shadow); its addresses stay local.
  void keep(const Service& svc, Part& part) const {
    std::vector<std::pair<VsKind, Address>> addrs;
    auto add = [&](VsKind kind, const std::string& text) {
      if (StatusOr<Address> a = parseKubernetesIp(text); a && !a->isUnspecified()) {
        addrs.emplace_back(kind, *a);
        part.kept.vips.insert(*a);
      }
    };
    add(VsKind::kClusterIP, svc.clusterIP);
    for (const auto& t : svc.clusterIPs) add(VsKind::kClusterIP, t);
    for (const auto& t : svc.externalIPs) add(VsKind::kExternalIP, t);
    for (const LoadBalancerIngress& in : svc.lbIngress) add(VsKind::kLoadBalancer, in.ip);
    auto shadow = [&](VsKind kind, Protocol proto, const Address& a, int64_t port) {
      Claim c;
      c.key = ServiceKey::make(proto, a, static_cast<uint16_t>(port));
      c.kind = kind;
      c.shadow = true;
      c.svc = &svc;
      c.seq = part.claims.size();
      part.claims.push_back(std::move(c));
    };
    for (const ServicePort& p : svc.ports) {
      // A protocol that does not parse: whichever it was programmed as.
      std::vector<Protocol> protos;
      if (std::optional<Protocol> proto = k8sProtocol(p.protocol)) {
        protos.push_back(*proto);
      } else {
        protos = {Protocol::kTcp, Protocol::kUdp, Protocol::kSctp};
      }
      for (Protocol proto : protos) {
        if (p.port >= 1 && p.port <= 65535) {
          for (const auto& [kind, a] : addrs) shadow(kind, proto, a, p.port);
        }
        if (p.nodePort >= node_.nodePortMin && p.nodePort <= node_.nodePortMax) {
          for (const Address& a : node_.nodeIps) {
            if (!a.isUnspecified()) shadow(VsKind::kNodePort, proto, a, p.nodePort);
          }
        }
      }
      // A port number that does not parse: every virtual server on its addresses.
      if (p.port < 1 || p.port > 65535) {
        for (const auto& [kind, a] : addrs) part.kept.addresses.insert(a);
      }
    }
  }

  void service(const Service& svc, Part& part) const {
    if (skipped(svc, node_)) return;
    Validated v;
    if (Status st = validateService(svc, node_, v); !st.isOk()) {
      part.errors.push_back({"Service", svc.meta.key(), st.message()});
      keep(svc, part);
      return;
    }
    const std::string key = svc.meta.key();
    bool external = svc.type == ServiceType::kNodePort || svc.type == ServiceType::kLoadBalancer ||
                    !svc.externalIPs.empty();
    bool itpLocal = svc.internalTrafficPolicy == TrafficPolicy::kLocal;
    bool etpLocal = external && svc.externalTrafficPolicy == TrafficPolicy::kLocal;

    auto hasFamily = [&](Family f) {
      return std::any_of(v.clusterIps.begin(), v.clusterIps.end(), [&](const Address& a) { return a.family == f; });
    };
    // kube-proxy runs one proxier per family and gives each only the
    // addresses of its family; a family without a ClusterIP gets nothing.
    for (const auto* list : {&v.externalIps, &v.lbIps}) {
      for (const Address& a : *list) {
        if (!hasFamily(a.family)) {
          part.notes.push_back("Service " + key + ": " + a.toString() +
                             " ignored: the Service has no ClusterIP of its family");
        }
      }
    }

    bool produced = false;
    for (size_t pi = 0; pi < svc.ports.size(); ++pi) {
      const ServicePort& port = svc.ports[pi];
      Protocol proto = v.protocols[pi];
      uint16_t portNum = static_cast<uint16_t>(port.port);
      for (Family fam : {Family::kV4, Family::kV6}) {
        if (!hasFamily(fam)) continue;
        // kube-proxy's UsesClusterEndpoints(), per port and family.
        const bool reachableFromOutside =
            port.nodePort != 0 ||
            std::any_of(v.externalIps.begin(), v.externalIps.end(), [&](const Address& a) { return a.family == fam; }) ||
            std::any_of(v.lbIps.begin(), v.lbIps.end(), [&](const Address& a) { return a.family == fam; });
        const bool usesClusterEndpoints = !itpLocal || reachableFromOutside;
        std::shared_ptr<DestSlot> clusterSet, localSet;
        auto slot = [&](bool local) {
          auto& s = local ? localSet : clusterSet;
          if (!s) {
            s = std::make_shared<DestSlot>();
            s->svc = &svc;
            s->portName = port.name;
            s->proto = proto;
            s->family = fam;
            s->local = local;
            s->clusterFallback = local && usesClusterEndpoints;
            s->zoneWeights = v.zoneWeights;
          }
          return s;
        };
        auto claim = [&](VsKind kind, const Address& a, uint16_t p, bool local) {
          Claim c;
          c.key = ServiceKey::make(proto, a, p);
          c.kind = kind;
          c.svc = &svc;
          c.seq = part.claims.size();
          c.spec = v.spec;
          c.slot = slot(local);
          c.origin = VsOrigin{key, std::string(port.name), vsKindName(kind)};
          c.serviceKey = key;
          part.claims.push_back(std::move(c));
          produced = true;
        };
        for (const Address& a : v.clusterIps) {
          if (a.family == fam) claim(VsKind::kClusterIP, a, portNum, itpLocal);
        }
        for (const Address& a : v.externalIps) {
          if (a.family == fam) claim(VsKind::kExternalIP, a, portNum, etpLocal);
        }
        for (const Address& a : v.lbIps) {
          if (a.family == fam) claim(VsKind::kLoadBalancer, a, portNum, etpLocal);
        }
        if (port.nodePort == 0) continue;
        if (port.nodePort < node_.nodePortMin || port.nodePort > node_.nodePortMax) {
          if (fam == Family::kV4 || !hasFamily(Family::kV4)) {  // once per port
            part.errors.push_back({"Service", key,
                                 "port " + (port.name.empty() ? std::to_string(pi) : "\"" + port.name + "\"") +
                                     ": nodePort " + std::to_string(port.nodePort) + " outside this node's range " +
                                     std::to_string(node_.nodePortMin) + "-" + std::to_string(node_.nodePortMax) +
                                     "; NodePort virtual servers not programmed"});
          }
          continue;
        }
        for (const Address& a : node_.nodeIps) {
          if (a.family != fam || a.isUnspecified() || !nodePortAddress(a)) continue;
          claim(VsKind::kNodePort, a, static_cast<uint16_t>(port.nodePort), etpLocal);
        }
      }
    }
    if (!produced) return;
    if (weightIsNotAShare(v.spec.scheduler)) {
      // With or without zone weights: ovf at kipvs's weight 1 admits about
      // one active connection per endpoint and drops the rest
      // (ip_vs_ovf.c), and fo sends everything to one endpoint.
      const std::string with = v.zoneWeights ? std::string(kAnnZoneWeights) + " with scheduler " : "scheduler ";
      part.notes.push_back("Service " + key + ": " + with + v.spec.scheduler +
                           (v.spec.scheduler == "fo"
                                ? ": all traffic goes to the heaviest endpoint"
                                : v.zoneWeights ? ": weights act as per-endpoint connection limits"
                                                : ": weights act as per-endpoint connection limits, and every "
                                                  "endpoint has weight 1: about one active connection each, "
                                                  "new ones beyond are dropped"));
    }
    if (v.zoneWeights) {
      if (ignoresWeights(v.spec.scheduler)) {
        part.notes.push_back("Service " + key + ": " + std::string(kAnnZoneWeights) + " has no effect: scheduler " +
                           v.spec.scheduler + " ignores weights (use wrr, wlc, sh or mh)");
      }
      if (node_.zone.empty()) {
        part.notes.push_back("Service " + key + ": " + std::string(kAnnZoneWeights) +
                           ": this node has no zone, every endpoint gets the \"other\" weight");
      }
    }
    if (!svc.loadBalancerSourceRanges.empty() && !v.lbIps.empty()) {
      part.notes.push_back("Service " + key + ": loadBalancerSourceRanges not enforced by kipvs");
    }
  }

  // As kube-proxy's NodePortAddresses: CIDRs of one family leave the other
  // family's addresses all selected (--nodeport-addresses=10.0.0.0/8 on a
  // dual-stack node still gives the IPv6 NodePorts).
  bool nodePortAddress(const Address& a) const {
    bool anyOfFamily = false;
    for (const Cidr& c : node_.nodePortCidrs) {
      if (c.base.family != a.family) continue;
      if (c.contains(a)) return true;
      anyOfFamily = true;
    }
    return !anyOfFamily;
  }

  // Endpoints of one Service port in one family, across all its slices, each
  // (address, port) once. Slices are matched by port name and protocol; the
  // port number comes from each slice (they may differ during a rollout).
  std::vector<Cand> candidates(const std::vector<SliceInfo>* slices, Family fam, std::string_view portName,
                               Protocol proto) const {
    std::vector<Cand> out;
    if (!slices) return out;
    for (size_t r = 0; r < slices->size(); ++r) {
      const SliceInfo& si = (*slices)[r];
      if (si.family != fam) continue;
      auto sp = std::lower_bound(si.ports.begin(), si.ports.end(), std::pair(portName, proto),
                                 [](const SlicePort& a, const std::pair<std::string_view, Protocol>& k) {
                                   return a.name != k.first ? a.name < k.first : a.protocol < k.second;
                                 });
      for (; sp != si.ports.end() && sp->name == portName && sp->protocol == proto; ++sp) {
        for (const EpInfo& ep : si.endpoints) out.push_back({DestKey{ep.address, sp->port}, &ep, r});
      }
    }
    // The same endpoint in two slices (it moved between them): keep one.
    // kube-proxy prefers the local copy, then whichever it met first; we
    // prefer local, then ready, then serving, then the first slice by name,
    // so that the outcome never depends on input order.
    std::sort(out.begin(), out.end(), [](const Cand& a, const Cand& b) {
      if (a.key != b.key) return a.key < b.key;
      if (a.ep->local != b.ep->local) return a.ep->local;
      if (a.ep->ready != b.ep->ready) return a.ep->ready;
      if (a.ep->serving != b.ep->serving) return a.ep->serving;
      return a.sliceRank < b.sliceRank;
    });
    out.erase(std::unique(out.begin(), out.end(), [](const Cand& a, const Cand& b) { return a.key == b.key; }),
              out.end());
    return out;
  }

  DestMap weigh(const std::vector<const Cand*>& chosen, const std::optional<ZoneWeights>& zoneWeights) const {
    DestMap out;
    for (const Cand* c : chosen) {
      DestState ds;
      ds.spec.fwd = ipvs::FwdMethod::kMasq;
      ds.spec.weight = 1;
      if (zoneWeights) {
        bool same = !node_.zone.empty() && c->ep->src->zone == node_.zone;
        ds.spec.weight = same ? zoneWeights->same : zoneWeights->other;
      }
      out.emplace_hint(out.end(), c->key, ds);  // chosen is sorted by key
    }
    // "other=0" (or "same=0") with no endpoint on the weighted side would
    // leave every real server at 0, which every weight-aware scheduler
    // reads as "take no new connection": the Service would be down with
    // endpoints ready. Zone weights prefer, they never cut off: equal shares.
    if (zoneWeights && std::all_of(out.begin(), out.end(), [](const auto& d) { return d.second.spec.weight == 0; })) {
      for (auto& [key, ds] : out) ds.spec.weight = 1;
    }
    return out;
  }

  // Until readSlices() has run, on whichever thread.
  void awaitSlices() const {
    if (!slicesRead_.load(std::memory_order_acquire)) slicesRead_.wait(false, std::memory_order_acquire);
  }

  // A slot's dests, unless another thread has them or is at them; readSlices() has run.
  void computeIfTodo(DestSlot& slot) const {
    uint8_t todo = DestSlot::kTodo;
    if (!slot.state.compare_exchange_strong(todo, DestSlot::kBusy, std::memory_order_acq_rel)) return;
    auto it = slices_.find(slot.svc->meta.key());
    std::vector<Cand> cands = candidates(it == slices_.end() ? nullptr : &it->second, slot.family, slot.portName,
                                         slot.proto);
    std::vector<const Cand*> chosen = slot.local ? localEndpoints(cands) : clusterEndpoints(cands, node_);
    if (chosen.empty() && slot.clusterFallback) chosen = clusterEndpoints(cands, node_);
    slot.dests = weigh(chosen, slot.zoneWeights);
    slot.state.store(DestSlot::kDone, std::memory_order_release);
    slot.state.notify_all();
  }

  // One winner per virtual server; losers are reported, their Service keeps
  // its other virtual servers. Winners go into d's table without dests, and
  // into winners_ with their slot. One sort of the claims by key, best
  // first, then every map is filled in key order (each insert at the end).
  // The maps are independent: this thread and a helper share them out
  // (shareOut), as servers() does its Services (VM, 10,000 Services: 27-34
  // ms, against ~75 ms on this thread alone).
  // A claim's key as plain integers that order as ServiceKey does (family,
  // protocol, address, port; kipvs makes no fwmark services), beside its
  // index: sorting these compares in registers, where comparing ServiceKeys
  // through claims_ took resolve() 15-26 ms under qemu at 10,000 Services.
  struct SortKey {
    uint64_t address[2];
    uint32_t familyProtocol;
    uint16_t port;
    uint32_t claim;
    static SortKey of(const ServiceKey& k, uint32_t claim) {
      SortKey s;
      std::memcpy(s.address, k.address.bytes.data(), 16);
      for (uint64_t& half : s.address) {
        if constexpr (std::endian::native == std::endian::little) half = __builtin_bswap64(half);
      }
      s.familyProtocol = static_cast<uint32_t>(k.family) << 16 | static_cast<uint32_t>(k.protocol);
      s.port = k.port;
      s.claim = claim;
      return s;
    }
    bool sameKey(const SortKey& o) const {
      return familyProtocol == o.familyProtocol && address[0] == o.address[0] && address[1] == o.address[1] &&
             port == o.port;
    }
    bool keyBefore(const SortKey& o) const {
      if (familyProtocol != o.familyProtocol) return familyProtocol < o.familyProtocol;
      if (address[0] != o.address[0]) return address[0] < o.address[0];
      if (address[1] != o.address[1]) return address[1] < o.address[1];
      return port < o.port;
    }
  };

  void resolve(Desired& d) {
    std::vector<SortKey> keys;
    keys.reserve(claims_.size());
    for (uint32_t i = 0; i < claims_.size(); ++i) {
      assert(!claims_[i]->key.isFwmark());
      keys.push_back(SortKey::of(claims_[i]->key, i));
    }
    std::sort(keys.begin(), keys.end(), [&](const SortKey& a, const SortKey& b) {
      if (!a.sameKey(b)) return a.keyBefore(b);
      return beats(*claims_[a.claim], *claims_[b.claim]);
    });
    std::vector<uint32_t> byKey(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) byKey[i] = keys[i].claim;
    keys = {};
    std::vector<uint32_t> winners;  // claim indices, in key order
    winners.reserve(claims_.size());
    std::vector<bool> won(claims_.size(), false);
    for (size_t g = 0; g < byKey.size();) {
      const Claim& w = *claims_[byKey[g]];
      size_t end = g + 1;
      for (; end < byKey.size() && claims_[byKey[end]]->key == w.key; ++end) {
        const Claim& c = *claims_[byKey[end]];
        if (w.svc == c.svc && w.kind == c.kind) continue;  // an address listed twice: same outcome, nothing to say
        if (c.shadow) continue;  // an invalid Service's: its error says enough
        if (w.shadow) {
          d.errors.push_back({"Service", c.svc->meta.key(),
                              std::string(vsKindName(c.kind)) + " virtual server " + c.key.toString() +
                                  " conflicts with Service " + w.svc->meta.key() + " (" + vsKindName(w.kind) +
                                  "), which is invalid: its virtual server is kept as it is; not programmed"});
          continue;
        }
        if (w.svc == c.svc && w.slot == c.slot) {
          // Its LB IP also an externalIP, say: the same spec and real servers,
          // so one virtual server serves both, as in kube-proxy.
          d.notes.push_back("Service " + c.svc->meta.key() + ": " + vsKindName(c.kind) + " " + c.key.toString() +
                            " is also its " + vsKindName(w.kind) + "; one virtual server serves both");
          continue;
        }
        std::string winner = w.svc == c.svc ? "its own " + std::string(vsKindName(w.kind)) + " virtual server"
                                            : "Service " + w.svc->meta.key() + " (" + vsKindName(w.kind) + ")";
        d.errors.push_back({"Service", c.svc->meta.key(),
                            std::string(vsKindName(c.kind)) + " virtual server " + c.key.toString() +
                                " conflicts with " + winner + "; not programmed"});
      }
      if (w.shadow) {
        d.kept.keys.insert(w.key);
      } else {
        won[byKey[g]] = true;
        winners.push_back(byKey[g]);
      }
      g = end;
    }
    // Each task touches its own fields of the winning claims.
    auto table = [&] {  // spec, slot
      winners_.reserve(winners.size());
      for (uint32_t i : winners) {
        Claim& w = *claims_[i];
        // kipvs makes no fwmark services, so normalizing never changes a key.
        ServiceKey key = w.key;
        ServiceState state;
        state.spec = std::move(w.spec);
        ipvs::normalize(key, state.spec);
        ++w.slot->takers;
        winners_.emplace_back(key, std::move(w.slot));
        d.table.services.emplace_hint(d.table.services.end(), key, std::move(state));
      }
    };
    auto origins = [&] {  // origin; the VIPs
      std::vector<Address> vips;
      vips.reserve(winners.size());
      for (uint32_t i : winners) {
        Claim& w = *claims_[i];
        if (w.kind != VsKind::kNodePort) vips.push_back(w.key.address);
        d.origins.emplace_hint(d.origins.end(), w.key, std::move(w.origin));
      }
      std::sort(vips.begin(), vips.end());
      for (const Address& a : vips) d.vips.emplace_hint(d.vips.end(), a);
    };
    auto services = [&] {  // serviceKey: Services with a virtual server, in production order (each Service's together)
      const Service* last = nullptr;
      for (size_t i = 0; i < claims_.size(); ++i) {
        if (!won[i] || claims_[i]->svc == last) continue;
        last = claims_[i]->svc;
        d.services.emplace_hint(d.services.end(), std::move(claims_[i]->serviceKey));
      }
    };
    shareOut(3, winners.size() >= parallelMinServices_ && haveSpareCpu(), [&](size_t t) {
      if (t == 0) table();
      if (t == 1) origins();
      if (t == 2) services();
    });
  }

  const Cluster& cluster_;
  const NodeFacts& node_;
  size_t parallelMinServices_;
  std::unordered_map<std::string, std::vector<SliceInfo>> slices_;  // "namespace/service" -> slices by name
  std::vector<Claim*> claims_;  // servers()'s, in its Parts, while it runs
  // Every virtual server of servers()'s table, by key, with the slot its
  // dests come from. Fixed once servers() returns: the helper reads it.
  std::vector<std::pair<ServiceKey, std::shared_ptr<DestSlot>>> winners_;
  // startHelping(): a thread that reads the slices, then works out slots in
  // key order. fillDests() goes the same way: each takes the next slot
  // nobody has, and waits only for one the other is at.
  std::thread helper_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> slicesRead_{false};
  std::vector<ObjectError> sliceErrors_;
  size_t ahead_ = 0;  // computeAhead()'s place in winners_
};

DesiredBuilder::DesiredBuilder(const Cluster& cluster, const NodeFacts& node, size_t parallelMinServices)
    : impl_(std::make_unique<Impl>(cluster, node, parallelMinServices)) {}
DesiredBuilder::~DesiredBuilder() = default;
Desired DesiredBuilder::servers() { return impl_->servers(); }
void DesiredBuilder::fillAll(Desired& d) {
  std::vector<ObjectError> sliceErrors = impl_->readSlices();
  impl_->computeAll();
  for (auto& [key, state] : d.table.services) impl_->fillDests(key, state);
  addSliceErrors(d, std::move(sliceErrors));
}
void DesiredBuilder::startHelping() { impl_->startHelping(); }
bool DesiredBuilder::computeAhead() { return impl_->computeAhead(); }
std::vector<ObjectError> DesiredBuilder::stopHelping() { return impl_->stopHelping(); }
void DesiredBuilder::fillDests(const ServiceKey& key, ServiceState& state) { impl_->fillDests(key, state); }

Desired computeDesired(const Cluster& cluster, const NodeFacts& node, size_t parallelMinServices) {
  DesiredBuilder b(cluster, node, parallelMinServices);
  Desired d = b.servers();
  b.fillAll(d);
  return d;
}

void addSliceErrors(Desired& d, std::vector<ObjectError>&& sliceErrors) {
  if (sliceErrors.empty()) return;
  d.errors.insert(d.errors.end(), std::make_move_iterator(sliceErrors.begin()),
                  std::make_move_iterator(sliceErrors.end()));
  std::sort(d.errors.begin(), d.errors.end());
}

}  // namespace kipvs::controller
