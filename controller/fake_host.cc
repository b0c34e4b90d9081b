#include "controller/fake_host.h"

#include <algorithm>

namespace kipvs::controller {

namespace {

Status noSuchInterface(const std::string& ifname) { return Status::kernel(ENODEV, "interface " + ifname); }

}  // namespace

Status FakeHostNetwork::enter(Op op, const std::string& key) {
  ++calls_[op];
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->op != op || (!it->match.empty() && it->match != key)) continue;
    Status s = it->status;
    if (--it->times <= 0) faults_.erase(it);
    return s;
  }
  return Status::ok();
}

void FakeHostNetwork::injectFailure(Op op, Status status, int times, std::string match) {
  faults_.push_back(Fault{op, std::move(status), times, std::move(match)});
}

int FakeHostNetwork::calls(Op op) const {
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

void FakeHostNetwork::addLink(const std::string& ifname, const std::string& type, bool up) {
  if (!links_.count(ifname)) linkOrder_.push_back(ifname);
  Link& link = links_[ifname];
  link.type = type;
  // Set down, the kernel drops the link's IPv6 routes (IPv4 ones stay).
  if (link.up && !up) std::erase_if(link.routes, [](const ipvs::Address& a) { return !a.isV4(); });
  link.up = up;
}

void FakeHostNetwork::addLinkAddress(const std::string& ifname, const ipvs::Address& addr) {
  if (!links_.count(ifname)) addLink(ifname, "veth");
  auto& addrs = links_[ifname].addresses;
  if (std::find(addrs.begin(), addrs.end(), addr) == addrs.end()) addrs.push_back(addr);
}

void FakeHostNetwork::seedIpvsSysctlDefaults() {
  // A fresh network namespace with ip_vs loaded.
  seedSysctl("net/ipv4/vs/conntrack", "0");
  seedSysctl("net/ipv4/vs/conn_reuse_mode", "1");
  seedSysctl("net/ipv4/vs/expire_nodest_conn", "0");
  seedSysctl("net/ipv4/vs/expire_quiescent_template", "0");
  seedSysctl("net/ipv4/ip_forward", "0");
}

std::string FakeHostNetwork::linkType(const std::string& ifname) const {
  auto it = links_.find(ifname);
  return it == links_.end() ? "" : it->second.type;
}

bool FakeHostNetwork::isUp(const std::string& ifname) const {
  auto it = links_.find(ifname);
  return it != links_.end() && it->second.up;
}

std::set<ipvs::Address> FakeHostNetwork::addresses(const std::string& ifname) const {
  auto it = links_.find(ifname);
  if (it == links_.end()) return {};
  return {it->second.addresses.begin(), it->second.addresses.end()};
}

Status FakeHostNetwork::ensureDummy(const std::string& ifname) {
  KIPVS_RETURN_IF_ERROR(enter(Op::kEnsureDummy, ifname));
  if (ifname.empty() || ifname.size() > 15) return Status::invalid("interface name \"" + ifname + "\": 1 to 15 bytes");
  auto it = links_.find(ifname);
  if (it == links_.end()) {
    addLink(ifname, "dummy", true);
    ++writes_;
    return Status::ok();
  }
  if (it->second.type != "dummy") {
    return Status::invalid("interface " + ifname + " exists with type \"" + it->second.type +
                           "\", not dummy: not taking it over");
  }
  if (!it->second.up) {
    it->second.up = true;
    ++writes_;
  }
  return Status::ok();
}

StatusOr<std::set<ipvs::Address>> FakeHostNetwork::boundAddresses(const std::string& ifname) {
  KIPVS_RETURN_IF_ERROR(enter(Op::kBoundAddresses, ifname));
  if (!links_.count(ifname)) return noSuchInterface(ifname).withContext("list addresses");
  std::set<ipvs::Address> out;
  for (const ipvs::Address& a : links_.at(ifname).addresses) {
    if (!isIpv6LinkLocal(a)) out.insert(a);
  }
  return out;
}

Status FakeHostNetwork::bindAddress(const std::string& ifname, const ipvs::Address& addr) {
  const std::string what = "bind " + addr.toString() + " to " + ifname;
  Status s = enter(Op::kBind, addr.toString());
  if (!s.isOk()) return s.withContext(what);
  auto it = links_.find(ifname);
  if (it == links_.end()) return noSuchInterface(ifname).withContext(what);
  KIPVS_RETURN_IF_ERROR(validateBindable(addr, what));
  auto& addrs = it->second.addresses;
  if (std::find(addrs.begin(), addrs.end(), addr) != addrs.end()) return Status::ok();  // EEXIST is success
  addrs.push_back(addr);
  ++writes_;
  return Status::ok();
}

Status FakeHostNetwork::unbindAddress(const std::string& ifname, const ipvs::Address& addr) {
  const std::string what = "unbind " + addr.toString() + " from " + ifname;
  Status s = enter(Op::kUnbind, addr.toString());
  if (!s.isOk()) return s.withContext(what);
  auto it = links_.find(ifname);
  if (it == links_.end()) return noSuchInterface(ifname).withContext(what);
  auto& addrs = it->second.addresses;
  auto pos = std::find(addrs.begin(), addrs.end(), addr);
  if (pos == addrs.end()) return Status::ok();  // EADDRNOTAVAIL is success
  addrs.erase(pos);
  ++writes_;
  return Status::ok();
}

std::set<ipvs::Address> FakeHostNetwork::routes(const std::string& ifname) const {
  auto it = links_.find(ifname);
  return it == links_.end() ? std::set<ipvs::Address>{} : it->second.routes;
}

StatusOr<std::set<ipvs::Address>> FakeHostNetwork::localRoutes(const std::string& ifname) {
  KIPVS_RETURN_IF_ERROR(enter(Op::kLocalRoutes, ifname));
  if (!links_.count(ifname)) return noSuchInterface(ifname).withContext("list local routes");
  return links_.at(ifname).routes;
}

Status FakeHostNetwork::changeRoute(bool add, const std::string& ifname, const ipvs::Address& addr) {
  const std::string what = std::string(add ? "add" : "delete") + " local route " + addr.toString() + " dev " + ifname;
  Status s = enter(add ? Op::kAddRoute : Op::kDeleteRoute, addr.toString());
  if (!s.isOk()) return s.withContext(what);
  auto it = links_.find(ifname);
  if (it == links_.end()) return noSuchInterface(ifname).withContext(what);
  if (!add) {
    if (it->second.routes.erase(addr)) ++writes_;  // ESRCH is success
    return Status::ok();
  }
  KIPVS_RETURN_IF_ERROR(validateBindable(addr, what));
  bool boundSomewhere = false;
  for (const auto& [name, link] : links_) {
    boundSomewhere =
        boundSomewhere || std::find(link.addresses.begin(), link.addresses.end(), addr) != link.addresses.end();
  }
  if (boundSomewhere) return Status::ok();
  if (auto f = foreignRoutes_.find(addr); f != foreignRoutes_.end()) {
    if (f->second == "local") return Status::ok();
    return Status::kernel(EEXIST, what + ": table local has a route for it already, not kipvs's, and the kernel routes it as " +
                                      f->second + ", not as local");
  }
  if (it->second.routes.insert(addr).second) ++writes_;
  return Status::ok();
}

std::vector<Status> FakeHostNetwork::addLocalRoutes(const std::string& ifname, std::span<const ipvs::Address> addrs) {
  std::vector<Status> out;
  for (const ipvs::Address& addr : addrs) out.push_back(changeRoute(true, ifname, addr));
  return out;
}

std::vector<Status> FakeHostNetwork::deleteLocalRoutes(const std::string& ifname,
                                                       std::span<const ipvs::Address> addrs) {
  std::vector<Status> out;
  for (const ipvs::Address& addr : addrs) out.push_back(changeRoute(false, ifname, addr));
  return out;
}

Status FakeHostNetwork::setSysctl(const std::string& path, const std::string& value) {
  Status s = enter(Op::kSetSysctl, path);
  if (!s.isOk()) return s.withContext("write sysctl " + path);
  auto it = sysctls_.find(path);
  if (it == sysctls_.end()) return Status::kernel(ENOENT, "write sysctl " + path);
  it->second = value;
  ++writes_;
  return Status::ok();
}

StatusOr<std::string> FakeHostNetwork::getSysctl(const std::string& path) {
  Status s = enter(Op::kGetSysctl, path);
  if (!s.isOk()) return s.withContext("read sysctl " + path);
  auto it = sysctls_.find(path);
  if (it == sysctls_.end()) return Status::kernel(ENOENT, "read sysctl " + path);
  return it->second;
}

StatusOr<std::vector<ipvs::Address>> FakeHostNetwork::nodeAddresses(const std::string& excludeIfname) {
  KIPVS_RETURN_IF_ERROR(enter(Op::kNodeAddresses, excludeIfname));
  // The kernel dumps v4 before v6, each by interface index.
  std::vector<ipvs::Address> out;
  for (ipvs::Family family : {ipvs::Family::kV4, ipvs::Family::kV6}) {
    for (const std::string& name : linkOrder_) {
      const Link& link = links_.at(name);
      if (name == excludeIfname) continue;
      for (const ipvs::Address& a : link.addresses) {
        if (a.family == family && isNodeAddressCandidate(a)) out.push_back(a);
      }
    }
  }
  return out;
}

StatusOr<std::string> FakeHostNetwork::kernelRelease() {
  KIPVS_RETURN_IF_ERROR(enter(Op::kKernelRelease, ""));
  return kernelRelease_;
}

StatusOr<std::set<ipvs::ServiceKey>> FakeHostNetwork::ownedRecord() {
  KIPVS_RETURN_IF_ERROR(enter(Op::kOwnedRecord, ""));
  return record_;
}

Status FakeHostNetwork::storeOwnedRecord(const std::set<ipvs::ServiceKey>& keys) {
  KIPVS_RETURN_IF_ERROR(enter(Op::kStoreOwnedRecord, ""));
  record_ = keys;
  ++writes_;
  return Status::ok();
}

}  // namespace kipvs::controller
