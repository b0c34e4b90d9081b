#pragma once
// The host side of a node proxy. The node must accept packets to every virtual
// IP, so that they reach IPVS on the LOCAL_IN hook: kipvs makes each VIP local
// on a dummy interface (kipvs0), either with a local route (the default, see
// VipMode) or, as kube-proxy's IPVS mode does, by binding it as an address. A
// few sysctls make IPVS behave. HostNetwork is the one interface through which
// the controller touches links, addresses, routes and sysctls;
// NetlinkHostNetwork (netlink_host.h) talks to the kernel, FakeHostNetwork
// (fake_host.h) keeps the same state in memory.

#include <compare>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/model.h"
#include "netlink/status.h"

namespace kipvs::controller {

// How a VIP is made local.
//  kRoute: a /32 or /128 route of type local in the local table, through the
//   dummy interface, with protocol kRouteProtocol (`ip route add local VIP dev
//   kipvs0 table local proto 241`). The kernel keeps routes in a trie: adding
//   10,000 costs ~1.5 s in the benchmark VM.
//  kAddress: the VIP bound as an address to the dummy interface, as
//   kube-proxy does. The kernel checks every new IPv4 address against all the
//   others on the device, so binding n VIPs is O(n^2): 10,000 cost ~8.5 s in
//   the same VM, more than programming the IPVS table itself.
// Either way the kernel sees the VIP as local (the address form adds the same
// local route, plus an entry on the device's address list).
enum class VipMode { kRoute, kAddress };
const char* vipModeName(VipMode m);  // "route", "address"

// rtm_protocol of kipvs's local routes: marks them as ours, so a route
// anyone else added for the same address is never listed or deleted. Not
// among iproute2's registered numbers (/etc/iproute2/rt_protos).
inline constexpr uint8_t kRouteProtocol = 241;

class HostNetwork {
 public:
  virtual ~HostNetwork() = default;

  // Creates the dummy link if missing and brings it up. An existing link of
  // another type is an error (kInvalid) naming it: we never take over a link
  // someone else made.
  virtual Status ensureDummy(const std::string& ifname) = 0;
  // The addresses (v4 and v6, any prefix length) on the interface, except
  // IPv6 link-local ones: the kernel gives an up link its own fe80::, which
  // is not ours to unbind.
  virtual StatusOr<std::set<ipvs::Address>> boundAddresses(const std::string& ifname) = 0;
  // Adds / removes addr as /32 or /128 (v6 with NODAD, default scope).
  // Idempotent: already bound / already gone are success. Unspecified and
  // IPv6 link-local addresses are refused (kInvalid).
  virtual Status bindAddress(const std::string& ifname, const ipvs::Address& addr) = 0;
  virtual Status unbindAddress(const std::string& ifname, const ipvs::Address& addr) = 0;
  // Many at once, one Status per address (same index). The kernel adapter
  // pipelines them: binding 10,000 VIPs is ~80 syscalls, not 20,000.
  virtual std::vector<Status> bindAddresses(const std::string& ifname, std::span<const ipvs::Address> addrs) {
    std::vector<Status> out;
    for (const auto& a : addrs) out.push_back(bindAddress(ifname, a));
    return out;
  }
  virtual std::vector<Status> unbindAddresses(const std::string& ifname, std::span<const ipvs::Address> addrs) {
    std::vector<Status> out;
    for (const auto& a : addrs) out.push_back(unbindAddress(ifname, a));
    return out;
  }
  // The /32 and /128 local routes of protocol kRouteProtocol through ifname
  // in the local table (see VipMode).
  virtual StatusOr<std::set<ipvs::Address>> localRoutes(const std::string& ifname) = 0;
  // Adds / deletes such routes, one Status per address (same index),
  // pipelined like bindAddresses. Idempotent: a local route already there
  // (the VIP is local) / already gone is success. Same refusals as
  // bindAddress.
  virtual std::vector<Status> addLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) = 0;
  virtual std::vector<Status> deleteLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) = 0;
  // path is relative to /proc/sys with slashes: "net/ipv4/vs/conntrack".
  // getSysctl trims the trailing newline. A missing sysctl is ENOENT.
  virtual Status setSysctl(const std::string& path, const std::string& value) = 0;
  virtual StatusOr<std::string> getSysctl(const std::string& path) = 0;
  // This host's addresses as kube-proxy's IPVS mode takes its default
  // NodePort addresses (GetAllLocalAddressesExcept the dummy, then
  // isValidForSet): every address on every link but excludeIfname (the
  // dummy: its addresses are virtual IPs), lo included (an L3 node's /32
  // there, an anycast VIP), without loopback, IPv6 link-local, multicast or
  // unspecified ones (isNodeAddressCandidate), in the kernel's order: v4
  // first, by interface, primary first. A missing excludeIfname excludes
  // nothing. Also every address packets reach this host at already, so that
  // a VIP among them needs no local route of kipvs's and gets none.
  virtual StatusOr<std::vector<ipvs::Address>> nodeAddresses(const std::string& excludeIfname) = 0;
  // uname -r, e.g. "6.1.0-18-amd64".
  virtual StatusOr<std::string> kernelRelease() = 0;
  // The virtual servers kipvs recorded as its own where the kernel does not
  // say so (owned_record.h), kept between runs; empty when none were.
  virtual StatusOr<std::set<ipvs::ServiceKey>> ownedRecord() = 0;
  // Replaces the record.
  virtual Status storeOwnedRecord(const std::set<ipvs::ServiceKey>& keys) = 0;
};

// Not loopback, IPv6 link-local, multicast or unspecified: what kube-proxy's
// isValidForSet keeps (IPv4 link-local stays: NodeLocal DNSCache's
// 169.254.20.10 gets NodePorts from kube-proxy too).
bool isNodeAddressCandidate(const ipvs::Address& addr);
// fe80::/10.
bool isIpv6LinkLocal(const ipvs::Address& addr);
// What bindAddress refuses before asking the kernel; `what` prefixes the message.
Status validateBindable(const ipvs::Address& addr, const std::string& what);

// The whole of a small file (a /proc/sys entry, the owned record). A failure
// is kKernel with the errno (ENOENT when missing): "read PATH".
StatusOr<std::string> readWholeFile(const std::string& path);

struct KernelVersion {
  int major = 0, minor = 0, patch = 0;
  auto operator<=>(const KernelVersion&) const = default;
};
// "6.1.0-18-amd64" -> 6.1.0, "5.9" -> 5.9.0; anything without major.minor
// is kParse.
StatusOr<KernelVersion> parseKernelRelease(std::string_view release);

// What kube-proxy does with net/ipv4/vs/conn_reuse_mode (pkg/proxy/ipvs/
// proxier.go, versions in pkg/util/kernel/constants.go): below 4.1 the sysctl
// does not exist (kube-proxy logs an error and goes on); from 4.1 up to 5.8 it
// is set to 0, because mode 1 dropped the first SYN of a reused connection and
// stalled it for a second (kubernetes#70747), at the cost of traffic sticking
// to removed endpoints (kubernetes#81775); from 5.9, where the kernel fixed
// both (kube-proxy cites torvalds/linux 35dfb013149f), it is left as it is
// (kubernetes#93297).
enum class ConnReuseAction { kUnsupported, kSetZero, kLeave };
ConnReuseAction connReuseActionFor(const KernelVersion& v);

// Sets the sysctls IPVS needs, as kube-proxy does: vs/conntrack=1,
// vs/expire_nodest_conn=1, vs/expire_quiescent_template=1, ip_forward=1, and
// vs/conn_reuse_mode per connReuseActionFor. Reads each first and writes
// only those that differ; appends "path: old -> new" to *changes (may be
// null) for each write. Stops at the first error, naming the sysctl.
Status prepareIpvsSysctls(HostNetwork& host, const std::string& kernelRelease, std::vector<std::string>* changes);

}  // namespace kipvs::controller
