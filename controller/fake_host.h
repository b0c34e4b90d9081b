#pragma once
// HostNetwork in memory, for unit tests of the apply loop.

#include <map>

#include "controller/host.h"

namespace kipvs::controller {

// Same semantics as the kernel for what the controller does: unknown
// interface is ENODEV, unknown sysctl is ENOENT, bind/unbind and route
// add/delete idempotent; adding a local route for an address bound on any
// link, or with someone else's local route, succeeds without making a route
// of ours (the kernel answers EEXIST: the address's own local route is
// there); with someone else's route of another type it fails with EEXIST.
// Tests seed links, addresses and sysctls, inspect them, and inject faults.
class FakeHostNetwork : public HostNetwork {
 public:
  enum class Op {
    kEnsureDummy,
    kBoundAddresses,
    kBind,
    kUnbind,
    kLocalRoutes,
    kAddRoute,
    kDeleteRoute,
    kSetSysctl,
    kGetSysctl,
    kNodeAddresses,
    kKernelRelease,
    kOwnedRecord,
    kStoreOwnedRecord,
  };

  explicit FakeHostNetwork(std::string kernelRelease = "6.1.0-18-amd64") : kernelRelease_(std::move(kernelRelease)) {}

  Status ensureDummy(const std::string& ifname) override;
  StatusOr<std::set<ipvs::Address>> boundAddresses(const std::string& ifname) override;
  Status bindAddress(const std::string& ifname, const ipvs::Address& addr) override;
  Status unbindAddress(const std::string& ifname, const ipvs::Address& addr) override;
  StatusOr<std::set<ipvs::Address>> localRoutes(const std::string& ifname) override;
  std::vector<Status> addLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  std::vector<Status> deleteLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  Status setSysctl(const std::string& path, const std::string& value) override;
  StatusOr<std::string> getSysctl(const std::string& path) override;
  StatusOr<std::vector<ipvs::Address>> nodeAddresses(const std::string& excludeIfname) override;
  StatusOr<std::string> kernelRelease() override;
  StatusOr<std::set<ipvs::ServiceKey>> ownedRecord() override;
  Status storeOwnedRecord(const std::set<ipvs::ServiceKey>& keys) override;

  // --- test controls ---
  // A link of any type ("dummy", "veth", "loopback"...), with addresses. On
  // a link there already, up=false sets it down, which drops its IPv6 routes.
  void addLink(const std::string& ifname, const std::string& type, bool up = true);
  void addLinkAddress(const std::string& ifname, const ipvs::Address& addr);  // creates a "veth" if missing
  // A route for addr in table local that is not kipvs's (another protocol or
  // link), of type "local" or another ("blackhole", "unreachable", "unicast"):
  // kipvs's add meets EEXIST, success where the route makes addr local.
  void addForeignRoute(const ipvs::Address& addr, std::string type) { foreignRoutes_[addr] = std::move(type); }
  // Makes a sysctl exist (the kernel's /proc/sys has a fixed set of files).
  void seedSysctl(const std::string& path, const std::string& value) { sysctls_[path] = value; }
  // The kube-proxy set with a fresh kernel's defaults (what ip_vs + a new netns show).
  void seedIpvsSysctlDefaults();
  // The next `times` calls of op fail with status. With match non-empty,
  // only calls whose address text, sysctl path (or, for link-wide ops, ifname)
  // equals match; other calls go through.
  void injectFailure(Op op, Status status, int times = 1, std::string match = "");

  bool hasLink(const std::string& ifname) const { return links_.count(ifname) != 0; }
  std::string linkType(const std::string& ifname) const;
  bool isUp(const std::string& ifname) const;
  std::set<ipvs::Address> addresses(const std::string& ifname) const;
  std::set<ipvs::Address> routes(const std::string& ifname) const;  // kipvs's local routes through ifname
  const std::map<std::string, std::string>& sysctls() const { return sysctls_; }
  // Calls per op, failed ones included.
  int calls(Op op) const;
  // Calls that changed state: links created or brought up, addresses added or
  // removed, sysctl writes, record stores.
  uint64_t writeCount() const { return writes_; }
  // The record as last stored (it lives with the node, as the file does).
  const std::set<ipvs::ServiceKey>& record() const { return record_; }
  void seedRecord(std::set<ipvs::ServiceKey> keys) { record_ = std::move(keys); }

 private:
  struct Link {
    std::string type;
    bool up = true;
    std::vector<ipvs::Address> addresses;  // in insertion order, like the kernel
    std::set<ipvs::Address> routes;        // local routes of protocol kRouteProtocol through this link
  };
  struct Fault {
    Op op;
    Status status;
    int times;
    std::string match;
  };
  // Counts the call; returns the injected status if one applies.
  Status enter(Op op, const std::string& key);
  // One address of addLocalRoutes / deleteLocalRoutes.
  Status changeRoute(bool add, const std::string& ifname, const ipvs::Address& addr);

  std::string kernelRelease_;
  std::map<std::string, Link> links_;
  std::vector<std::string> linkOrder_;  // creation order, like ifindex
  std::map<std::string, std::string> sysctls_;
  std::map<ipvs::Address, std::string> foreignRoutes_;  // address -> route type
  std::vector<Fault> faults_;
  std::map<Op, int> calls_;
  std::set<ipvs::ServiceKey> record_;
  uint64_t writes_ = 0;
};

}  // namespace kipvs::controller
