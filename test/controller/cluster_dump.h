#pragma once
// A canonical text rendering of a parsed Cluster and of the Desired state
// computed from it: every field, in a fixed order. The golden files under
// test/fixtures/golden/ were written by the DOM parser this one replaced, so
// comparing renderings proves the parser and computeDesired give the same
// results. bench/desired_bench --dump prints it too (for the big clusters).

#include <algorithm>
#include <string>
#include <vector>

#include "controller/desired.h"
#include "controller/k8s.h"

namespace kipvs::controller::testing {

// Printable without ambiguity: quotes, backslashes and bytes outside 0x20..0x7e escaped.
inline std::string escaped(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c > 0x7e) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

template <typename List>
std::string escapedList(const List& l) {
  std::string out = "[";
  bool first = true;
  for (const auto& s : l) {
    out += (first ? "" : ",") + escaped(s);
    first = false;
  }
  return out + "]";
}

template <typename Opt>
std::string opt(const Opt& o) {
  if (!o) return "nil";
  if constexpr (std::is_same_v<std::decay_t<decltype(*o)>, bool>) return *o ? "true" : "false";
  else if constexpr (std::is_integral_v<std::decay_t<decltype(*o)>>) return std::to_string(*o);
  else return escaped(*o);
}

// Sorted by key: the rendering does not depend on how the model stores them.
template <typename Map>
std::string dumpMap(const char* what, const Map& m) {
  std::vector<std::pair<std::string, std::string>> sorted(m.begin(), m.end());
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (const auto& [k, v] : sorted) out += std::string("  ") + what + " " + escaped(k) + "=" + escaped(v) + "\n";
  return out;
}

inline std::string dumpMeta(const ObjectMeta& m) {
  return "  meta ns=" + escaped(m.ns) + " name=" + escaped(m.name) + "\n" + dumpMap("label", m.labels) +
         dumpMap("annotation", m.annotations);
}

inline const char* policyName(TrafficPolicy p) { return p == TrafficPolicy::kLocal ? "Local" : "Cluster"; }

inline std::string dumpCluster(const Cluster& c) {
  std::string out;
  for (const Service& s : c.services) {
    out += "Service " + escaped(s.meta.key()) + "\n" + dumpMeta(s.meta);
    out += std::string("  type=") + serviceTypeName(s.type) + " clusterIP=" + escaped(s.clusterIP) +
           " clusterIPs=" + escapedList(s.clusterIPs) + " ipFamilies=" + escapedList(s.ipFamilies) + "\n";
    for (const ServicePort& p : s.ports) {
      out += "  port name=" + escaped(p.name) + " protocol=" + escaped(p.protocol) + " port=" + std::to_string(p.port) +
             " targetPort=" + (p.targetPort.isString ? escaped(p.targetPort.text) : std::to_string(p.targetPort.number)) +
             " nodePort=" + std::to_string(p.nodePort) + "\n";
    }
    out += "  externalIPs=" + escapedList(s.externalIPs) +
           " sessionAffinity=" + (s.sessionAffinity == SessionAffinity::kClientIP ? "ClientIP" : "None") +
           " timeout=" + opt(s.affinityTimeoutSeconds) + " etp=" + policyName(s.externalTrafficPolicy) +
           " itp=" + policyName(s.internalTrafficPolicy) + " hcnp=" + std::to_string(s.healthCheckNodePort) +
           " externalName=" + escaped(s.externalName) + " trafficDistribution=" + escaped(s.trafficDistribution) +
           " lbSourceRanges=" + escapedList(s.loadBalancerSourceRanges) + "\n";
    for (const LoadBalancerIngress& in : s.lbIngress) {
      out += "  ingress ip=" + escaped(in.ip) + " hostname=" + escaped(in.hostname) + " ipMode=" + escaped(in.ipMode) + "\n";
    }
  }
  for (const EndpointSlice& s : c.slices) {
    out += "EndpointSlice " + escaped(s.meta.key()) + " service=" + escaped(s.serviceName()) + "\n" + dumpMeta(s.meta);
    const char* at = s.addressType == AddressType::kIPv4 ? "IPv4" : s.addressType == AddressType::kIPv6 ? "IPv6" : "FQDN";
    out += std::string("  addressType=") + at + "\n";
    for (const EndpointPort& p : s.ports) {
      out += "  port name=" + opt(p.name) + " protocol=" + escaped(p.protocol) + " port=" + opt(p.port) + "\n";
    }
    for (const Endpoint& e : s.endpoints) {
      out += "  endpoint addresses=" + escapedList(e.addresses) + " ready=" + opt(e.conditions.ready) +
             " serving=" + opt(e.conditions.serving) + " terminating=" + opt(e.conditions.terminating) +
             " node=" + escaped(e.nodeName) + " zone=" + escaped(e.zone) + " forZones=" + escapedList(e.hintZones()) +
             " forNodes=" + escapedList(e.hintNodes()) + "\n";
    }
  }
  for (const ObjectError& e : c.errors) out += "error " + escaped(e.toString()) + "\n";
  return out;
}

inline std::string dumpDesired(const Desired& d) {
  std::string out;
  for (const auto& [key, st] : d.table.services) {
    out += "VS " + key.toString() + " sched=" + st.spec.scheduler + " flags=" + std::to_string(st.spec.flags) +
           " timeout=" + std::to_string(st.spec.timeout) + " netmask=" + std::to_string(st.spec.netmask) +
           " pe=" + escaped(st.spec.pe);
    if (auto it = d.origins.find(key); it != d.origins.end()) {
      out += " origin=" + escaped(it->second.service) + "/" + escaped(it->second.portName) + "/" + it->second.kind;
    }
    out += "\n";
    for (const auto& [dk, ds] : st.dests) {
      out += "  -> " + dk.toString() + " " + ipvs::fwdMethodName(ds.spec.fwd) + " w=" + std::to_string(ds.spec.weight) +
             " u=" + std::to_string(ds.spec.upperThreshold) + " l=" + std::to_string(ds.spec.lowerThreshold) + "\n";
    }
  }
  for (const auto& a : d.vips) out += "vip " + a.toString() + "\n";
  for (const auto& s : d.services) out += "service " + escaped(s) + "\n";
  for (const ObjectError& e : d.errors) out += "error " + escaped(e.toString()) + "\n";
  for (const std::string& n : d.notes) out += "note " + escaped(n) + "\n";
  return out;
}

// The node facts every golden rendering uses: one plain node, one dual-stack
// node with a zone, a proxy name and a NodePort CIDR filter.
inline std::vector<std::pair<std::string, NodeFacts>> goldenNodes() {
  NodeFacts a;
  a.nodeName = "node-00";
  a.zone = "zone-0";
  a.nodeIps.push_back(*ipvs::Address::parse("198.51.100.10"));
  NodeFacts b;
  b.nodeName = "node-a";
  b.zone = "zone-a";
  b.proxyName = "kipvs";
  b.nodeIps = {*ipvs::Address::parse("192.0.2.1"), *ipvs::Address::parse("10.1.2.3"), *ipvs::Address::parse("fd00::1")};
  b.nodePortCidrs = {*Cidr::parse("192.0.2.0/24"), *Cidr::parse("fd00::/64")};
  return {{"node-00", a}, {"node-a", b}};
}

// Everything about one parse: the Cluster, then Desired for each golden node;
// or the error.
inline std::string dumpAll(const StatusOr<Cluster>& c) {
  if (!c) return "status " + escaped(c.status().toString()) + "\n";
  std::string out = dumpCluster(*c);
  for (const auto& [name, node] : goldenNodes()) {
    out += "== desired for " + name + "\n" + dumpDesired(computeDesired(*c, node));
  }
  return out;
}

}  // namespace kipvs::controller::testing
