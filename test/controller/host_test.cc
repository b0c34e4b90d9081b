// HostNetwork in memory (FakeHostNetwork), the sysctl policy
// (prepareIpvsSysctls, conn_reuse_mode by kernel version) and the file side
// of NetlinkHostNetwork's sysctls against a temporary directory.

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "controller/fake_host.h"
#include "controller/host.h"
#include "controller/netlink_host.h"

namespace kipvs::controller {
namespace {

using Op = FakeHostNetwork::Op;

ipvs::Address ip(const char* text) {
  auto a = ipvs::Address::parse(text);
  REQUIRE_MESSAGE(a.isOk(), text);
  return *a;
}

std::set<ipvs::Address> ips(std::initializer_list<const char*> texts) {
  std::set<ipvs::Address> out;
  for (const char* t : texts) out.insert(ip(t));
  return out;
}

TEST_CASE("FakeHostNetwork: ensureDummy creates, brings up, is idempotent, refuses other types") {
  FakeHostNetwork host;
  CHECK(host.ensureDummy("kube-ipvs0").isOk());
  CHECK(host.linkType("kube-ipvs0") == "dummy");
  CHECK(host.isUp("kube-ipvs0"));
  CHECK(host.writeCount() == 1);
  CHECK(host.ensureDummy("kube-ipvs0").isOk());
  CHECK(host.writeCount() == 1);  // nothing to do the second time

  host.addLink("down0", "dummy", /*up=*/false);
  CHECK(host.ensureDummy("down0").isOk());
  CHECK(host.isUp("down0"));

  host.addLink("eth0", "veth");
  Status s = host.ensureDummy("eth0");
  CHECK(s.code() == Code::kInvalid);
  CHECK(s.message().find("eth0") != std::string::npos);
  CHECK(s.message().find("veth") != std::string::npos);
  CHECK(host.linkType("eth0") == "veth");

  CHECK(host.ensureDummy("").code() == Code::kInvalid);
  CHECK(host.ensureDummy("a-name-longer-than-15").code() == Code::kInvalid);
}

TEST_CASE("FakeHostNetwork: bind/unbind are idempotent and name what failed") {
  FakeHostNetwork host;
  REQUIRE(host.ensureDummy("kipvs0").isOk());
  const uint64_t base = host.writeCount();

  CHECK(host.bindAddress("kipvs0", ip("10.96.0.1")).isOk());
  CHECK(host.bindAddress("kipvs0", ip("fd00::1")).isOk());
  CHECK(host.bindAddress("kipvs0", ip("10.96.0.1")).isOk());  // EEXIST is success
  CHECK(host.writeCount() == base + 2);
  auto bound = host.boundAddresses("kipvs0");
  REQUIRE(bound.isOk());
  CHECK(*bound == ips({"10.96.0.1", "fd00::1"}));

  CHECK(host.unbindAddress("kipvs0", ip("10.96.0.1")).isOk());
  CHECK(host.unbindAddress("kipvs0", ip("10.96.0.1")).isOk());  // EADDRNOTAVAIL is success
  CHECK(host.unbindAddress("kipvs0", ip("10.96.0.99")).isOk());
  CHECK(host.writeCount() == base + 3);
  CHECK(host.addresses("kipvs0") == ips({"fd00::1"}));

  Status missing = host.bindAddress("nope0", ip("10.96.0.2"));
  CHECK(missing.code() == Code::kKernel);
  CHECK(missing.errnum() == ENODEV);
  CHECK(missing.message().find("nope0") != std::string::npos);
  CHECK(missing.message().find("10.96.0.2") != std::string::npos);
  CHECK(host.unbindAddress("nope0", ip("10.96.0.2")).errnum() == ENODEV);
  CHECK(host.boundAddresses("nope0").status().errnum() == ENODEV);

  CHECK(host.bindAddress("kipvs0", ip("0.0.0.0")).code() == Code::kInvalid);
  CHECK(host.bindAddress("kipvs0", ip("::")).code() == Code::kInvalid);
  CHECK(host.bindAddress("kipvs0", ip("fe80::1")).code() == Code::kInvalid);
}

TEST_CASE("FakeHostNetwork: the kernel's own link-local address is not reported as bound") {
  FakeHostNetwork host;
  REQUIRE(host.ensureDummy("kipvs0").isOk());
  host.addLinkAddress("kipvs0", ip("fe80::a8c1:abff:fe12:3456"));  // what an up link gets
  REQUIRE(host.bindAddress("kipvs0", ip("fd00::10")).isOk());
  CHECK(*host.boundAddresses("kipvs0") == ips({"fd00::10"}));
}

TEST_CASE("FakeHostNetwork: injected failures hit the matching calls only, as many times as asked") {
  FakeHostNetwork host;
  REQUIRE(host.ensureDummy("kipvs0").isOk());
  host.injectFailure(Op::kBind, Status::kernel(ENOSPC, "injected"), 2, "10.96.0.2");

  CHECK(host.bindAddress("kipvs0", ip("10.96.0.1")).isOk());
  Status s = host.bindAddress("kipvs0", ip("10.96.0.2"));
  CHECK(s.errnum() == ENOSPC);
  CHECK(s.message().find("10.96.0.2") != std::string::npos);
  CHECK(s.message().find("kipvs0") != std::string::npos);
  CHECK(host.bindAddress("kipvs0", ip("10.96.0.2")).errnum() == ENOSPC);
  CHECK(host.bindAddress("kipvs0", ip("10.96.0.2")).isOk());  // used up
  CHECK(host.calls(Op::kBind) == 4);
  CHECK(host.addresses("kipvs0") == ips({"10.96.0.1", "10.96.0.2"}));

  host.injectFailure(Op::kBoundAddresses, Status::error(Code::kTimeout, "injected", ETIMEDOUT));
  CHECK(host.boundAddresses("kipvs0").status().code() == Code::kTimeout);
  CHECK(host.boundAddresses("kipvs0").isOk());

  host.injectFailure(Op::kEnsureDummy, Status::kernel(EPERM, "injected"));
  CHECK(host.ensureDummy("kipvs0").errnum() == EPERM);
}

TEST_CASE("FakeHostNetwork: sysctls exist only when seeded, like /proc/sys") {
  FakeHostNetwork host;
  CHECK(host.getSysctl("net/ipv4/vs/conntrack").status().errnum() == ENOENT);
  CHECK(host.setSysctl("net/ipv4/vs/conntrack", "1").errnum() == ENOENT);
  host.seedSysctl("net/ipv4/vs/conntrack", "0");
  CHECK(host.setSysctl("net/ipv4/vs/conntrack", "1").isOk());
  CHECK(*host.getSysctl("net/ipv4/vs/conntrack") == "1");
  CHECK(host.sysctls().at("net/ipv4/vs/conntrack") == "1");
}

TEST_CASE("FakeHostNetwork: node addresses skip loopback, IPv6 link-local, the dummy, and come v4 first") {
  FakeHostNetwork host;
  host.addLink("lo", "loopback");
  host.addLinkAddress("lo", ip("127.0.0.1"));
  host.addLinkAddress("lo", ip("::1"));
  host.addLinkAddress("lo", ip("10.255.0.1"));  // an L3 node's /32 on lo is one
  host.addLinkAddress("eth0", ip("fe80::1"));
  host.addLinkAddress("eth0", ip("2001:db8::10"));
  host.addLinkAddress("eth0", ip("192.0.2.10"));
  host.addLinkAddress("eth0", ip("169.254.1.1"));
  host.addLinkAddress("eth1", ip("198.51.100.7"));
  REQUIRE(host.ensureDummy("kube-ipvs0").isOk());
  REQUIRE(host.bindAddress("kube-ipvs0", ip("10.96.0.1")).isOk());

  auto nodes = host.nodeAddresses("kube-ipvs0");
  REQUIRE(nodes.isOk());
  CHECK(*nodes == std::vector<ipvs::Address>{ip("10.255.0.1"), ip("192.0.2.10"), ip("169.254.1.1"), ip("198.51.100.7"),
                                             ip("2001:db8::10")});
}

TEST_CASE("isNodeAddressCandidate") {
  CHECK(isNodeAddressCandidate(ip("192.0.2.1")));
  CHECK(isNodeAddressCandidate(ip("10.0.0.1")));
  CHECK(isNodeAddressCandidate(ip("2001:db8::1")));
  CHECK(isNodeAddressCandidate(ip("fd00::1")));
  CHECK(isNodeAddressCandidate(ip("fec0::1")));  // site-local (deprecated), not fe80::/10
  CHECK_FALSE(isNodeAddressCandidate(ip("0.0.0.0")));
  CHECK_FALSE(isNodeAddressCandidate(ip("127.0.0.1")));
  CHECK_FALSE(isNodeAddressCandidate(ip("127.1.2.3")));
  CHECK(isNodeAddressCandidate(ip("169.254.20.10")));  // kube-proxy keeps IPv4 link-local
  CHECK_FALSE(isNodeAddressCandidate(ip("224.0.0.1")));
  CHECK_FALSE(isNodeAddressCandidate(ip("255.255.255.255")));
  CHECK_FALSE(isNodeAddressCandidate(ip("::")));
  CHECK_FALSE(isNodeAddressCandidate(ip("::1")));
  CHECK_FALSE(isNodeAddressCandidate(ip("fe80::1")));
  CHECK_FALSE(isNodeAddressCandidate(ip("febf::1")));
  CHECK_FALSE(isNodeAddressCandidate(ip("ff02::1")));
}

TEST_CASE("parseKernelRelease") {
  struct Case {
    const char* release;
    KernelVersion want;
  };
  for (const Case& c : std::vector<Case>{
           {"6.1.0-18-amd64", {6, 1, 0}},
           {"5.10.0-28-cloud-amd64", {5, 10, 0}},
           {"5.9", {5, 9, 0}},
           {"5.9-rc1", {5, 9, 0}},
           {"4.19.260", {4, 19, 260}},
           {"6.18.44-fc-v782", {6, 18, 44}},
           {"3.10.0-1160.el7.x86_64", {3, 10, 0}},
       }) {
    CAPTURE(c.release);
    auto v = parseKernelRelease(c.release);
    REQUIRE(v.isOk());
    CHECK(*v == c.want);
  }
  for (const char* bad : {"", "6", "linux", "v6.1", ".1.2", "6."}) {
    CAPTURE(bad);
    CHECK(parseKernelRelease(bad).status().code() == Code::kParse);
  }
}

TEST_CASE("conn_reuse_mode follows kube-proxy: none below 4.1, 0 until 5.9, left alone from 5.9") {
  CHECK(connReuseActionFor({3, 10, 0}) == ConnReuseAction::kUnsupported);
  CHECK(connReuseActionFor({4, 0, 9}) == ConnReuseAction::kUnsupported);
  CHECK(connReuseActionFor({4, 1, 0}) == ConnReuseAction::kSetZero);
  CHECK(connReuseActionFor({4, 19, 0}) == ConnReuseAction::kSetZero);
  CHECK(connReuseActionFor({5, 8, 18}) == ConnReuseAction::kSetZero);
  CHECK(connReuseActionFor({5, 9, 0}) == ConnReuseAction::kLeave);
  CHECK(connReuseActionFor({5, 10, 0}) == ConnReuseAction::kLeave);
  CHECK(connReuseActionFor({6, 1, 0}) == ConnReuseAction::kLeave);
}

TEST_CASE("prepareIpvsSysctls on a new kernel: four writes, conn_reuse_mode untouched, then nothing") {
  FakeHostNetwork host;
  host.seedIpvsSysctlDefaults();
  std::vector<std::string> changes;
  REQUIRE(prepareIpvsSysctls(host, "6.1.0-18-amd64", &changes).isOk());
  CHECK(changes == std::vector<std::string>{
                       "net/ipv4/vs/conntrack: 0 -> 1",
                       "net/ipv4/vs/expire_nodest_conn: 0 -> 1",
                       "net/ipv4/vs/expire_quiescent_template: 0 -> 1",
                       "net/ipv4/ip_forward: 0 -> 1",
                   });
  CHECK(host.sysctls().at("net/ipv4/vs/conntrack") == "1");
  CHECK(host.sysctls().at("net/ipv4/vs/expire_nodest_conn") == "1");
  CHECK(host.sysctls().at("net/ipv4/vs/expire_quiescent_template") == "1");
  CHECK(host.sysctls().at("net/ipv4/ip_forward") == "1");
  CHECK(host.sysctls().at("net/ipv4/vs/conn_reuse_mode") == "1");
  CHECK(host.calls(Op::kSetSysctl) == 4);

  changes.clear();
  REQUIRE(prepareIpvsSysctls(host, "6.1.0-18-amd64", &changes).isOk());
  CHECK(changes.empty());
  CHECK(host.calls(Op::kSetSysctl) == 4);  // read, equal, not written

  // A 5.9+ kernel leaves an operator's choice alone, whichever it is.
  host.seedSysctl("net/ipv4/vs/conn_reuse_mode", "2");
  REQUIRE(prepareIpvsSysctls(host, "5.9.0", nullptr).isOk());
  CHECK(host.sysctls().at("net/ipv4/vs/conn_reuse_mode") == "2");
}

TEST_CASE("prepareIpvsSysctls on 4.1..5.8 sets conn_reuse_mode=0") {
  FakeHostNetwork host;
  host.seedIpvsSysctlDefaults();
  std::vector<std::string> changes;
  REQUIRE(prepareIpvsSysctls(host, "5.4.0-150-generic", &changes).isOk());
  CHECK(changes.size() == 5);
  CHECK(std::find(changes.begin(), changes.end(), "net/ipv4/vs/conn_reuse_mode: 1 -> 0") != changes.end());
  CHECK(host.sysctls().at("net/ipv4/vs/conn_reuse_mode") == "0");
}

TEST_CASE("prepareIpvsSysctls below 4.1 does not touch conn_reuse_mode") {
  FakeHostNetwork host;
  host.seedIpvsSysctlDefaults();
  REQUIRE(prepareIpvsSysctls(host, "3.10.0-1160.el7.x86_64", nullptr).isOk());
  CHECK(host.sysctls().at("net/ipv4/vs/conn_reuse_mode") == "1");
  CHECK(host.calls(Op::kGetSysctl) == 4);
}

TEST_CASE("prepareIpvsSysctls writes only what differs") {
  FakeHostNetwork host;
  host.seedIpvsSysctlDefaults();
  host.seedSysctl("net/ipv4/vs/conntrack", "1");
  host.seedSysctl("net/ipv4/ip_forward", "1\n");  // as read from /proc: compared trimmed
  std::vector<std::string> changes;
  REQUIRE(prepareIpvsSysctls(host, "6.1.0", &changes).isOk());
  CHECK(changes == std::vector<std::string>{
                       "net/ipv4/vs/expire_nodest_conn: 0 -> 1",
                       "net/ipv4/vs/expire_quiescent_template: 0 -> 1",
                   });
  CHECK(host.calls(Op::kSetSysctl) == 2);
  CHECK(host.sysctls().at("net/ipv4/ip_forward") == "1\n");  // not rewritten
}

TEST_CASE("prepareIpvsSysctls errors: no ip_vs, a failing write, an unreadable release") {
  SUBCASE("ip_vs not loaded: /proc/sys/net/ipv4/vs is missing") {
    FakeHostNetwork host;
    host.seedSysctl("net/ipv4/ip_forward", "0");
    Status s = prepareIpvsSysctls(host, "6.1.0", nullptr);
    CHECK(s.errnum() == ENOENT);
    CHECK(s.message().find("net/ipv4/vs/conntrack") != std::string::npos);
    CHECK(s.message().find("ip_vs") != std::string::npos);
  }
  SUBCASE("a write fails: stop there, name the sysctl, keep what was done") {
    FakeHostNetwork host;
    host.seedIpvsSysctlDefaults();
    host.injectFailure(Op::kSetSysctl, Status::kernel(EPERM, "injected"), 1, "net/ipv4/vs/expire_nodest_conn");
    std::vector<std::string> changes;
    Status s = prepareIpvsSysctls(host, "6.1.0", &changes);
    CHECK(s.errnum() == EPERM);
    CHECK(s.message().find("net/ipv4/vs/expire_nodest_conn") != std::string::npos);
    CHECK(changes == std::vector<std::string>{"net/ipv4/vs/conntrack: 0 -> 1"});
    CHECK(host.sysctls().at("net/ipv4/ip_forward") == "0");
  }
  SUBCASE("an unreadable value is written anyway, like kube-proxy") {
    FakeHostNetwork host;
    host.seedIpvsSysctlDefaults();
    host.injectFailure(Op::kGetSysctl, Status::kernel(EIO, "injected"), 1, "net/ipv4/ip_forward");
    std::vector<std::string> changes;
    REQUIRE(prepareIpvsSysctls(host, "6.1.0", &changes).isOk());
    CHECK(changes.back() == "net/ipv4/ip_forward: (unreadable) -> 1");
  }
  SUBCASE("a kernel release without major.minor") {
    FakeHostNetwork host;
    host.seedIpvsSysctlDefaults();
    CHECK(prepareIpvsSysctls(host, "weird", nullptr).code() == Code::kParse);
    CHECK(host.calls(Op::kGetSysctl) == 0);
  }
}

// NetlinkHostNetwork's sysctls are plain files under a root: test them on a
// temporary directory (opening the rtnetlink socket needs no privilege).
TEST_CASE("NetlinkHostNetwork sysctl files under a given root") {
  char dir[] = "/tmp/kipvs-sysctl-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  const std::string root = dir;
  REQUIRE(mkdir((root + "/net").c_str(), 0755) == 0);
  REQUIRE(mkdir((root + "/net/ipv4").c_str(), 0755) == 0);
  { std::ofstream(root + "/net/ipv4/ip_forward") << "0\n"; }

  auto host = NetlinkHostNetwork::open({.procSysRoot = root});
  REQUIRE_MESSAGE(host.isOk(), host.status().toString());
  auto v = (*host)->getSysctl("net/ipv4/ip_forward");
  REQUIRE(v.isOk());
  CHECK(*v == "0");  // newline trimmed
  CHECK((*host)->setSysctl("net/ipv4/ip_forward", "1").isOk());
  CHECK(*(*host)->getSysctl("net/ipv4/ip_forward") == "1");

  Status missing = (*host)->getSysctl("net/ipv4/vs/conntrack").status();
  CHECK(missing.code() == Code::kKernel);
  CHECK(missing.errnum() == ENOENT);
  CHECK(missing.message().find("net/ipv4/vs/conntrack") != std::string::npos);
  CHECK((*host)->setSysctl("net/ipv4/vs/conntrack", "1").errnum() == ENOENT);

  for (const char* bad : {"", "/net/ipv4/ip_forward", "net/../../etc/passwd", "net//ipv4", "net/ipv4/", ".."}) {
    CAPTURE(bad);
    CHECK((*host)->getSysctl(bad).status().code() == Code::kInvalid);
    CHECK((*host)->setSysctl(bad, "1").code() == Code::kInvalid);
  }

  auto release = (*host)->kernelRelease();
  REQUIRE(release.isOk());
  CHECK(parseKernelRelease(*release).isOk());

  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace kipvs::controller
