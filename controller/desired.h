#pragma once
// Kubernetes Services + EndpointSlices + node facts -> the desired IPVS table.
// Pure: no kernel, no I/O. kube-proxy IPVS-mode semantics unless noted.

#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "controller/k8s.h"
#include "ipvs/model.h"

namespace kipvs::controller {

struct Cidr {
  ipvs::Address base;
  int prefix = 0;
  static StatusOr<Cidr> parse(std::string_view text);  // "10.0.0.0/8", "fd00::/64"
  bool contains(const ipvs::Address& a) const;
  std::string toString() const;
  auto operator<=>(const Cidr&) const = default;
};

// An IP address from a Kubernetes object (clusterIP(s), externalIPs, a load
// balancer's ingress ip, an endpoint's address), read as kube-proxy reads
// them (netutils.ParseIPSloppy, then To4): the API server still takes and
// keeps the legacy forms there (IsValidIPForLegacyField), so an IPv4
// address may have leading zeros ("192.168.001.010" is 192.168.1.10,
// decimal), and an IPv4-mapped IPv6 address ("::ffff:10.0.0.1") is the IPv4
// address. Flags and the kernel's answers keep Address::parse's one form.
StatusOr<ipvs::Address> parseKubernetesIp(std::string_view text);

// What kubelet names a node when not told otherwise (GetHostname: the host
// name trimmed and lowercased), so that endpoints' nodeName match it.
std::string kubeletNodeName(std::string_view hostName);

struct NodeFacts {
  std::string nodeName;
  std::vector<ipvs::Address> nodeIps;          // NodePort VSs go on these (filtered by nodePortCidrs)
  std::vector<Cidr> nodePortCidrs;             // none of a family: all nodeIps of that family
  std::string zone;                            // this node's zone (topology, zone weights)
  std::string proxyName;                       // service.kubernetes.io/service-proxy-name we answer to ("" = none)
  std::string defaultScheduler = "rr";
  uint16_t nodePortMin = 30000, nodePortMax = 32767;
};

// ObjectError lives in controller/k8s.h: the parser reports it too.

// Why a virtual server exists: which Service and port produced it.
struct VsOrigin {
  std::string service;    // "namespace/name"
  std::string portName;   // Service port name ("" if unnamed)
  std::string kind;       // "ClusterIP", "ExternalIP", "LoadBalancer", "NodePort"
};

// What invalid Services may have in the kernel from before: their virtual
// servers (these keys, every one on these addresses) are left as they are, neither deleted nor changed, and their VIPs
// stay local, until the Service is fixed or gone: a typo in one annotation
// must not take a working Service down.
struct Kept {
  std::set<ipvs::Address> vips;       // the clusterIPs, externalIPs and LB IPs that still parse: they stay local
  // Each of those with each port that parses, and the nodePorts on the node
  // addresses, unless a valid Service's claim of its rank or higher takes one over;
  // and virtual servers the kernel would refuse (reconcile's check).
  std::set<ipvs::ServiceKey> keys;
  std::set<ipvs::Address> addresses;  // every virtual server on these (a port number does not parse)
  // A Service did not even parse: which virtual servers are its is unknown,
  // so none that is not wanted goes this run.
  bool everything = false;
  // Namespaces where an EndpointSlice did not parse: its Service is unknown,
  // so the real servers of every Service there may come and change but do
  // not go this run; realServers: those Services' virtual servers.
  std::set<std::string> realServersIn;
  std::set<ipvs::ServiceKey> realServers;
  bool realServersEverywhere = false;  // ... in every namespace (which one is unknown): realServers stays empty
};

struct Desired {
  ipvs::Table table;                              // normalized; counters zero
  std::map<ipvs::ServiceKey, VsOrigin> origins;   // one per table entry
  std::set<ipvs::Address> vips;                   // ClusterIPs, externalIPs, LB IPs to bind on the dummy interface
  std::vector<ObjectError> errors;                // invalid objects (skipped)
  Kept kept;                                      // what invalid Services may have in the kernel
  std::vector<std::string> notes;                 // e.g. zone weights given to a scheduler that ignores weights
  std::set<std::string> services;                 // "namespace/name" of every Service that produced at least one VS
};

// The scheduler names the kernel may have (ip_vs_<name>.ko). Used to reject
// unknown names early; whether the module is really present is the kernel's word.
bool isKnownScheduler(std::string_view name);

// The desired state in two steps, so that a reconcile can send the virtual
// servers to the kernel while their real servers are still being worked out.
//  1. servers(): every virtual server (spec, origin, VIP), conflicts between
//     Services settled, the Services' errors and notes (sorted); no real
//     servers yet. Needs the Services only.
//  2. Either fillAll(d): every real server of servers()'s result d, on two
//     threads when large, with the EndpointSlices' errors sorted in. Or, as
//     a reconcile plans: startHelping() starts a helper thread that reads the
//     EndpointSlices, then works the real servers out in key order, and
//     fillDests() gives one virtual server's (each once, any order, one
//     thread), waiting only for one the helper is at; computeAhead() has the
//     calling thread work ahead while it would otherwise wait; stopHelping()
//     joins the helper and returns the slices' errors (addSliceErrors).
// computeDesired() is servers() then fillAll(). From parallelMinServices
// Services on, step 1, fillAll() and the helper use two threads (same
// result); tests vary it.
class DesiredBuilder {
 public:
  // cluster and node must outlive the builder.
  DesiredBuilder(const Cluster& cluster, const NodeFacts& node, size_t parallelMinServices = 1000);
  ~DesiredBuilder();
  DesiredBuilder(const DesiredBuilder&) = delete;
  DesiredBuilder& operator=(const DesiredBuilder&) = delete;

  Desired servers();
  void fillAll(Desired& d);
  void startHelping();
  bool computeAhead();  // false: nothing left to work out
  std::vector<ObjectError> stopHelping();  // joins the helper (the destructor does too)
  void fillDests(const ipvs::ServiceKey& key, ipvs::ServiceState& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

Desired computeDesired(const Cluster& cluster, const NodeFacts& node, size_t parallelMinServices = 1000);

// Step 2's EndpointSlice errors (stopHelping()) into d.errors,
// sorted in with step 1's as computeDesired() gives them.
void addSliceErrors(Desired& d, std::vector<ObjectError>&& sliceErrors);

}  // namespace kipvs::controller
