#pragma once
// HostNetwork on the real kernel: links, addresses and routes over rtnetlink, sysctls
// through /proc/sys. Errors carry the kernel's raw errno and name the
// interface and address involved.
//
// rtnetlink is spoken with the project's own codec (netlink/message.h) on a
// plain NETLINK_ROUTE socket, not libnl-route: libnl folds errnos into NLE_*
// codes (ENODEV and ENOENT both become NLE_OBJ_NOTFOUND), and its headers
// (<netlink/socket.h>) collide with this repository's netlink/ directory
// once -I<repo root> comes first on the include path.

#include <functional>
#include <memory>

#include "controller/host.h"

namespace kipvs::netlink {
class MessageWriter;
}

namespace kipvs::controller {

class RtnlSocket;  // a NETLINK_ROUTE socket and its request/answer loop (netlink_host.cc)

class NetlinkHostNetwork : public HostNetwork {
 public:
  struct Options {
    std::string procSysRoot = "/proc/sys";  // tests point this at a temp dir
    std::string stateDir = "/run/kipvs";    // the owned record's directory (owned_record.h)
  };
  // Opens an rtnetlink socket. Not thread-safe: one per thread.
  static StatusOr<std::unique_ptr<NetlinkHostNetwork>> open(Options options);
  static StatusOr<std::unique_ptr<NetlinkHostNetwork>> open() { return open(Options{}); }
  ~NetlinkHostNetwork() override;
  NetlinkHostNetwork(const NetlinkHostNetwork&) = delete;
  NetlinkHostNetwork& operator=(const NetlinkHostNetwork&) = delete;

  Status ensureDummy(const std::string& ifname) override;
  StatusOr<std::set<ipvs::Address>> boundAddresses(const std::string& ifname) override;
  Status bindAddress(const std::string& ifname, const ipvs::Address& addr) override;
  Status unbindAddress(const std::string& ifname, const ipvs::Address& addr) override;
  std::vector<Status> bindAddresses(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  std::vector<Status> unbindAddresses(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  StatusOr<std::set<ipvs::Address>> localRoutes(const std::string& ifname) override;
  std::vector<Status> addLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  std::vector<Status> deleteLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) override;
  Status setSysctl(const std::string& path, const std::string& value) override;
  StatusOr<std::string> getSysctl(const std::string& path) override;
  StatusOr<std::vector<ipvs::Address>> nodeAddresses(const std::string& excludeIfname) override;
  StatusOr<std::string> kernelRelease() override;
  StatusOr<std::set<ipvs::ServiceKey>> ownedRecord() override;
  Status storeOwnedRecord(const std::set<ipvs::ServiceKey>& keys) override;

  // Route entries the kernel sent to localRoutes() so far (the kernel filters
  // the dump where it can: see dumpOurRoutes in the .cc).
  uint64_t routesRead() const { return routesRead_; }

 private:
  NetlinkHostNetwork(std::unique_ptr<RtnlSocket> rtnl, Options options);
  using DescribeFn = std::function<std::string(const ipvs::Address&)>;
  using BuildFn = std::function<void(netlink::MessageWriter&, const ipvs::Address&, int ifindex, uint32_t seq)>;
  // One request per address (built by `build`), pipelined in chunks; the
  // kernel's alreadyErrno (EEXIST on add, ...) counts as success.
  std::vector<Status> changeBatch(const std::string& ifname, std::span<const ipvs::Address> addrs,
                                  const DescribeFn& what, const BuildFn& build, int alreadyErrno);
  std::vector<Status> changeAddresses(bool add, const std::string& ifname, std::span<const ipvs::Address> addrs);
  std::vector<Status> changeRoutes(bool add, const std::string& ifname, std::span<const ipvs::Address> addrs);

  // The owned record's file in options_.stateDir, named by this netns (found once).
  StatusOr<std::string> recordPath();

  std::unique_ptr<RtnlSocket> rtnl_;
  Options options_;
  std::string recordPath_;
  uint64_t routesRead_ = 0;
};

}  // namespace kipvs::controller
