// NetlinkHostNetwork against a real kernel, with iproute2 as the independent
// witness. It changes links and sysctls freely, so it runs only in a network
// namespace of its own: one it is started in (unshare -n, ip netns exec) if
// that holds nothing but lo, else a new one it makes itself (needs root).
//
//   build/host_kernel_test                            (host, root)
//   test/vm/run.sh -- build/host_kernel_test --require-dummy --require-ipvs
//
// --require-dummy: fail (instead of falling back to an ifb link for the
//   address tests) when the kernel has no dummy driver.
// --require-ipvs: fail (instead of skipping the net/ipv4/vs sysctls) when
//   /proc/sys/net/ipv4/vs is missing even after `modprobe ip_vs`.
// Everything else goes to doctest (-s, -tc=..., etc.).

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sched.h>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "controller/host.h"
#include "controller/netlink_host.h"

namespace kipvs::controller {
namespace {

struct Flags {
  bool requireDummy = false;
  bool requireIpvs = false;
};
Flags& flags() {
  static Flags f;  // set once by main, before any test runs
  return f;
}

constexpr const char* kDummy = "kipvs0";

struct Run {
  int rc = 0;
  std::string out;
};

// Runs a shell command, stdout and stderr together.
Run sh(const std::string& cmd) {
  Run r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void mustSh(const std::string& cmd) {
  Run r = sh(cmd);
  INFO("command: ", cmd, "\noutput: ", r.out);
  REQUIRE(r.rc == 0);
}

ipvs::Address ip(const std::string& text) {
  auto a = ipvs::Address::parse(text);
  REQUIRE_MESSAGE(a.isOk(), text);
  return *a;
}

std::unique_ptr<NetlinkHostNetwork> openHost() {
  auto h = NetlinkHostNetwork::open();
  REQUIRE_MESSAGE(h.isOk(), h.status().toString());
  return std::move(h).value();
}

// What `ip -o addr show dev X` lists: address -> "prefix flags..." text.
struct IpAddr {
  int prefix = 0;
  std::string rest;  // scope and flags, e.g. "scope global nodad"
};
std::map<ipvs::Address, IpAddr> ipAddrShow(const std::string& dev) {
  Run r = sh("ip -o addr show dev " + dev);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  std::map<ipvs::Address, IpAddr> out;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line.substr(0, line.find('\\')));
    std::string w;
    while (words >> w) {
      if (w != "inet" && w != "inet6") continue;
      std::string cidr;
      words >> cidr;
      const size_t slash = cidr.find('/');
      IpAddr a;
      a.prefix = slash == std::string::npos ? -1 : std::stoi(cidr.substr(slash + 1));
      std::string more;
      while (words >> more) a.rest += (a.rest.empty() ? "" : " ") + more;
      out[ip(cidr.substr(0, slash))] = a;
    }
  }
  return out;
}

// The addresses iproute2 sees that boundAddresses should report (not fe80::).
std::set<ipvs::Address> witnessBound(const std::map<ipvs::Address, IpAddr>& shown) {
  std::set<ipvs::Address> out;
  for (const auto& [a, info] : shown) {
    if (!isIpv6LinkLocal(a)) out.insert(a);
  }
  return out;
}
std::set<ipvs::Address> witnessBound(const std::string& dev) { return witnessBound(ipAddrShow(dev)); }

// The dummy, or (kernel without the dummy driver, and allowed) an ifb link
// of the same name standing in for it in the address tests.
bool& haveDummyDriver() {
  static bool have = true;
  return have;
}

void ensureTestLink(NetlinkHostNetwork& host) {
  if (haveDummyDriver()) {
    Status s = host.ensureDummy(kDummy);
    if (s.isOk()) return;
    if (!(s.code() == Code::kUnsupported && s.errnum() == EOPNOTSUPP && !flags().requireDummy)) FAIL(s.toString());
    haveDummyDriver() = false;
  }
  if (sh(std::string("ip link show ") + kDummy).rc != 0) {
    mustSh(std::string("ip link add ") + kDummy + " type ifb && ip link set " + kDummy + " up");
  }
}

TEST_CASE("ensureDummy creates an up dummy link, is idempotent, brings a down one up") {
  auto host = openHost();
  Status s = host->ensureDummy(kDummy);
  if (!s.isOk() && s.code() == Code::kUnsupported && !flags().requireDummy) {
    MESSAGE("SKIPPED: this kernel has no dummy driver (", s.toString(), "); addresses are tested on an ifb link");
    haveDummyDriver() = false;
    CHECK(s.errnum() == EOPNOTSUPP);
    CHECK(s.message().find(kDummy) != std::string::npos);
    return;
  }
  REQUIRE_MESSAGE(s.isOk(), s.toString());
  Run link = sh(std::string("ip -o -d link show ") + kDummy);
  INFO(link.out);
  CHECK(link.out.find(" dummy ") != std::string::npos);
  CHECK(link.out.find(",UP") != std::string::npos);

  CHECK(host->ensureDummy(kDummy).isOk());
  mustSh(std::string("ip link set ") + kDummy + " down");
  CHECK(host->ensureDummy(kDummy).isOk());
  link = sh(std::string("ip -o link show ") + kDummy);
  INFO(link.out);
  CHECK(link.out.find(",UP") != std::string::npos);
}

TEST_CASE("ensureDummy refuses a link of another type and names it") {
  auto host = openHost();
  mustSh("ip link add kveth0 type veth peer name kveth1");
  Status s = host->ensureDummy("kveth0");
  CHECK(s.code() == Code::kInvalid);
  CHECK(s.message().find("kveth0") != std::string::npos);
  CHECK(s.message().find("veth") != std::string::npos);
  CHECK(host->ensureDummy("bad/name").code() == Code::kInvalid);
  CHECK(host->ensureDummy("waytoolongname16").code() == Code::kInvalid);
  mustSh("ip link del kveth0");
}

TEST_CASE("bind, list and unbind v4 and v6 addresses; idempotent; agrees with ip addr") {
  auto host = openHost();
  ensureTestLink(*host);
  const std::vector<ipvs::Address> vips = {ip("10.96.0.1"), ip("10.96.0.10"), ip("fd00:10:96::1"),
                                           ip("fd00:10:96::a")};
  for (const auto& a : vips) {
    Status s = host->bindAddress(kDummy, a);
    CHECK_MESSAGE(s.isOk(), s.toString());
  }
  for (const auto& a : vips) CHECK(host->bindAddress(kDummy, a).isOk());  // EEXIST is success

  auto bound = host->boundAddresses(kDummy);
  REQUIRE_MESSAGE(bound.isOk(), bound.status().toString());
  CHECK(*bound == std::set<ipvs::Address>(vips.begin(), vips.end()));
  const auto shown = ipAddrShow(kDummy);  // each `ip` costs seconds under the VM's TCG: one call, used twice
  CHECK(*bound == witnessBound(shown));
  for (const auto& [a, info] : shown) {
    if (isIpv6LinkLocal(a)) continue;
    CAPTURE(a.toString());
    CAPTURE(info.rest);
    CHECK(info.prefix == (a.isV4() ? 32 : 128));
    CHECK(info.rest.find("scope global") != std::string::npos);  // default scope, like kube-proxy
    if (!a.isV4()) {
      CHECK(info.rest.find("nodad") != std::string::npos);
      CHECK(info.rest.find("tentative") == std::string::npos);  // usable at once
    }
  }
  // The kernel accepts packets to them: a local route each.
  Run route = sh("ip route get 10.96.0.10; ip -6 route get fd00:10:96::a");
  CHECK_MESSAGE(route.out.rfind("local 10.96.0.10", 0) == 0, route.out);
  CHECK_MESSAGE(route.out.find("\nlocal fd00:10:96::a") != std::string::npos, route.out);

  CHECK(host->unbindAddress(kDummy, ip("10.96.0.1")).isOk());
  CHECK(host->unbindAddress(kDummy, ip("fd00:10:96::1")).isOk());
  CHECK(host->unbindAddress(kDummy, ip("10.96.0.1")).isOk());      // EADDRNOTAVAIL is success
  CHECK(host->unbindAddress(kDummy, ip("fd00:10:96::1")).isOk());
  CHECK(host->unbindAddress(kDummy, ip("192.0.2.99")).isOk());     // never bound
  CHECK(host->unbindAddress(kDummy, ip("2001:db8::99")).isOk());
  bound = host->boundAddresses(kDummy);
  REQUIRE(bound.isOk());
  CHECK(*bound == std::set<ipvs::Address>{ip("10.96.0.10"), ip("fd00:10:96::a")});
  CHECK(*bound == witnessBound(kDummy));

  for (const auto& a : vips) CHECK(host->unbindAddress(kDummy, a).isOk());
  CHECK(host->boundAddresses(kDummy)->empty());
  CHECK(witnessBound(kDummy).empty());
}

TEST_CASE("bindAddresses / unbindAddresses: 600 VIPs in a few syscalls, one status each, agrees with ip addr") {
  auto host = openHost();
  ensureTestLink(*host);
  std::vector<ipvs::Address> vips;
  for (uint32_t i = 0; i < 500; ++i) vips.push_back(ipvs::Address::v4(0x0a600000u + i + 1));
  for (uint32_t i = 0; i < 100; ++i) vips.push_back(ip(("fd00:10:97::" + std::to_string(i + 1)).c_str()));
  vips.push_back(ip("0.0.0.0"));  // refused before sending; the others still go
  std::vector<Status> r = host->bindAddresses(kDummy, vips);
  REQUIRE(r.size() == vips.size());
  for (size_t i = 0; i + 1 < vips.size(); ++i) CHECK_MESSAGE(r[i].isOk(), r[i].toString());
  CHECK_FALSE(r.back().isOk());
  vips.pop_back();
  r = host->bindAddresses(kDummy, vips);  // again: EEXIST folds to success
  for (const auto& s : r) CHECK_MESSAGE(s.isOk(), s.toString());
  auto bound = host->boundAddresses(kDummy);
  REQUIRE(bound.isOk());
  CHECK(*bound == std::set<ipvs::Address>(vips.begin(), vips.end()));
  CHECK(*bound == witnessBound(kDummy));
  r = host->unbindAddresses(kDummy, vips);
  for (const auto& s : r) CHECK_MESSAGE(s.isOk(), s.toString());
  CHECK(host->boundAddresses(kDummy)->empty());
  CHECK(witnessBound(kDummy).empty());
}

TEST_CASE("boundAddresses: an address of another prefix length on the dummy is not kipvs's, and stays") {
  auto host = openHost();
  ensureTestLink(*host);
  mustSh(std::string("ip addr add 10.50.0.5/24 dev ") + kDummy + " && ip addr add fd00:50::5/64 dev " + kDummy +
         " nodad");
  REQUIRE(host->bindAddresses(kDummy, std::vector<ipvs::Address>{ip("10.50.0.6")})[0].isOk());
  auto bound = host->boundAddresses(kDummy);
  REQUIRE(bound.isOk());
  CHECK(*bound == std::set<ipvs::Address>{ip("10.50.0.6")});
  const std::string listed = sh(std::string("ip -o addr show dev ") + kDummy).out;
  CHECK(listed.find("10.50.0.5/24") != std::string::npos);
  CHECK(listed.find("fd00:50::5/64") != std::string::npos);
  (void)sh(std::string("ip addr flush dev ") + kDummy + " scope global");
}

// kipvs's local routes as iproute2 lists them: `ip route show table local
// proto 241 dev X` for both families, destination of each line.
std::set<ipvs::Address> witnessRoutes(const std::string& dev) {
  Run r = sh("ip -4 -o route show table local proto 241 dev " + dev + "; ip -6 -o route show table local proto 241 dev " +
             dev);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  std::set<ipvs::Address> out;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string type, dst;
    words >> type >> dst;
    CHECK_MESSAGE(type == "local", line);
    out.insert(ip(dst.substr(0, dst.find('/'))));
  }
  return out;
}

TEST_CASE("local routes: add, list and delete v4 and v6 in batches; idempotent; ours only; agrees with ip route") {
  auto host = openHost();
  ensureTestLink(*host);
  std::vector<ipvs::Address> vips;
  for (uint32_t i = 0; i < 300; ++i) vips.push_back(ipvs::Address::v4(0x0a610000u + i + 1));
  for (uint32_t i = 0; i < 50; ++i) vips.push_back(ip(("fd00:10:98::" + std::to_string(i + 1)).c_str()));
  vips.push_back(ip("0.0.0.0"));  // refused before sending; the others still go
  std::vector<Status> r = host->addLocalRoutes(kDummy, vips);
  REQUIRE(r.size() == vips.size());
  for (size_t i = 0; i + 1 < vips.size(); ++i) CHECK_MESSAGE(r[i].isOk(), r[i].toString());
  CHECK(r.back().code() == Code::kInvalid);
  vips.pop_back();
  r = host->addLocalRoutes(kDummy, vips);  // again: EEXIST folds to success
  for (const auto& s : r) CHECK_MESSAGE(s.isOk(), s.toString());

  // 1,000 routes that are not ours, through the same device and elsewhere:
  // the kernel filters the dump, so listing reads only ours.
  {
    std::string batch;
    for (int i = 0; i < 500; ++i) {
      batch += "route add 10.201." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + "/32 dev " +
               kDummy + "\n";
      batch += "route add local 10.202." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
               "/32 dev lo table local proto static\n";
    }
    FILE* f = std::fopen("/tmp/kipvs-host-routes.batch", "w");
    REQUIRE(f != nullptr);
    std::fputs(batch.c_str(), f);
    std::fclose(f);
    mustSh("ip -batch /tmp/kipvs-host-routes.batch");
  }
  const uint64_t readBefore = host->routesRead();
  auto listed = host->localRoutes(kDummy);
  REQUIRE_MESSAGE(listed.isOk(), listed.status().toString());
  CHECK(*listed == std::set<ipvs::Address>(vips.begin(), vips.end()));
  CHECK(*listed == witnessRoutes(kDummy));
  CHECK(host->routesRead() - readBefore == vips.size());  // 6.1 filters (4.20+): none of the 1,000 others
  CHECK(host->boundAddresses(kDummy)->empty());  // routes, not addresses
  // The kernel takes packets to them as its own.
  Run get = sh("ip route get 10.97.0.5; ip -6 route get fd00:10:98::7");
  CHECK_MESSAGE(get.out.rfind("local 10.97.0.5", 0) == 0, get.out);
  CHECK_MESSAGE(get.out.find("\nlocal fd00:10:98::7") != std::string::npos, get.out);

  // Someone else's local route (another protocol) is neither listed nor deleted.
  mustSh(std::string("ip route add local 10.97.9.9 dev ") + kDummy + " table local proto static");
  CHECK(host->deleteLocalRoutes(kDummy, std::vector<ipvs::Address>{ip("10.97.9.9")}).front().isOk());  // ESRCH
  CHECK(host->localRoutes(kDummy)->count(ip("10.97.9.9")) == 0);
  CHECK(sh("ip route show table local 10.97.9.9").out.find("proto static") != std::string::npos);
  mustSh("ip route del local 10.97.9.9 table local");
  // A VIP bound as an address is local already: adding our route is success, and not ours.
  REQUIRE(host->bindAddress(kDummy, ip("10.97.8.8")).isOk());
  CHECK(host->addLocalRoutes(kDummy, std::vector<ipvs::Address>{ip("10.97.8.8")}).front().isOk());
  CHECK(host->localRoutes(kDummy)->count(ip("10.97.8.8")) == 0);
  REQUIRE(host->unbindAddress(kDummy, ip("10.97.8.8")).isOk());
  // So is one with someone else's local route (another protocol, another link).
  mustSh("ip route add local 10.97.9.9 dev lo table local proto static");
  CHECK(host->addLocalRoutes(kDummy, std::vector<ipvs::Address>{ip("10.97.9.9")}).front().isOk());
  CHECK(host->localRoutes(kDummy)->count(ip("10.97.9.9")) == 0);
  mustSh("ip route del local 10.97.9.9 table local");
  // A blackhole there keeps the VIP from being local: the add says so (EEXIST), not "added".
  mustSh("ip route add blackhole 10.97.7.7/32 table local; ip -6 route add blackhole fd00:10:98::7:7/128 table local");
  {
    const std::vector<ipvs::Address> holes{ip("10.97.7.7"), ip("fd00:10:98::7:7")};
    std::vector<Status> bh = host->addLocalRoutes(kDummy, holes);
    REQUIRE(bh.size() == 2);
    for (const Status& st : bh) {
      CHECK_FALSE(st.isOk());
      CHECK(st.errnum() == EEXIST);
      CHECK_MESSAGE(st.toString().find("not kipvs's") != std::string::npos, st.toString());
      CHECK_MESSAGE(st.toString().find("as local") != std::string::npos, st.toString());
    }
    CHECK(host->localRoutes(kDummy)->count(holes[0]) == 0);
    CHECK(host->localRoutes(kDummy)->count(holes[1]) == 0);
  }
  mustSh("ip route del blackhole 10.97.7.7/32 table local; ip -6 route del blackhole fd00:10:98::7:7/128 table local");

  r = host->deleteLocalRoutes(kDummy, vips);
  for (const auto& s : r) CHECK_MESSAGE(s.isOk(), s.toString());
  r = host->deleteLocalRoutes(kDummy, vips);  // ESRCH folds to success
  for (const auto& s : r) CHECK_MESSAGE(s.isOk(), s.toString());
  CHECK(host->localRoutes(kDummy)->empty());
  CHECK(witnessRoutes(kDummy).empty());

  // A kernel error inside a batch is that address's alone, in the middle and
  // last (only a batch's last request asks for an ack; the others are
  // answered only when they fail).
  mustSh(std::string("sysctl -qw net.ipv6.conf.") + kDummy + ".disable_ipv6=1");
  const std::vector<ipvs::Address> mixed{ip("10.97.1.1"), ip("fd00:10:98::1:1"), ip("10.97.1.2"),
                                         ip("fd00:10:98::1:2")};
  r = host->addLocalRoutes(kDummy, mixed);
  mustSh(std::string("sysctl -qw net.ipv6.conf.") + kDummy + ".disable_ipv6=0");
  REQUIRE(r.size() == mixed.size());
  CHECK_MESSAGE(r[0].isOk(), r[0].toString());
  CHECK_MESSAGE(r[2].isOk(), r[2].toString());
  for (size_t i : {size_t{1}, size_t{3}}) {
    CHECK(r[i].code() == Code::kKernel);
    CHECK(r[i].errnum() != 0);
    CHECK_MESSAGE(r[i].message().find(mixed[i].toString()) != std::string::npos, r[i].toString());
  }
  CHECK(*host->localRoutes(kDummy) == std::set<ipvs::Address>{ip("10.97.1.1"), ip("10.97.1.2")});
  CHECK(witnessRoutes(kDummy) == std::set<ipvs::Address>{ip("10.97.1.1"), ip("10.97.1.2")});
  r = host->deleteLocalRoutes(kDummy, mixed);
  for (const auto& st : r) CHECK_MESSAGE(st.isOk(), st.toString());  // ESRCH for the v6 ones folds to success
  CHECK(host->localRoutes(kDummy)->empty());

  Status s = host->addLocalRoutes("nope0", std::vector<ipvs::Address>{ip("10.97.0.7")}).front();
  CHECK(s.errnum() == ENODEV);
  CHECK(s.message().find("add local route 10.97.0.7/32 dev nope0") != std::string::npos);
  CHECK(host->localRoutes("nope0").status().errnum() == ENODEV);
}

TEST_CASE("errors carry the kernel's errno and name the interface and address") {
  auto host = openHost();
  Status s = host->bindAddress("nope0", ip("10.96.0.7"));
  CHECK(s.code() == Code::kKernel);
  CHECK(s.errnum() == ENODEV);
  CHECK(s.message().find("nope0") != std::string::npos);
  CHECK(s.message().find("10.96.0.7") != std::string::npos);
  s = host->unbindAddress("nope0", ip("fd00::7"));
  CHECK(s.errnum() == ENODEV);
  CHECK(s.message().find("fd00::7") != std::string::npos);
  CHECK(host->boundAddresses("nope0").status().errnum() == ENODEV);
  CHECK(host->boundAddresses("nope0").status().message().find("nope0") != std::string::npos);
  CHECK(host->bindAddress(kDummy, ip("0.0.0.0")).code() == Code::kInvalid);
  CHECK(host->bindAddress(kDummy, ip("fe80::5")).code() == Code::kInvalid);
}

TEST_CASE("nodeAddresses: as kube-proxy's default NodePort addresses: lo's and IPv4 link-local too; not loopback, IPv6 link-local or the dummy's") {
  auto host = openHost();
  ensureTestLink(*host);
  REQUIRE(host->bindAddress(kDummy, ip("10.96.0.1")).isOk());
  REQUIRE(host->bindAddress(kDummy, ip("fd00:10:96::1")).isOk());
  // An L3 node's /32 on lo is its node IP (kube-proxy: GetAllLocalAddressesExcept,
  // isValidForSet); up links get the kernel's fe80:: too, which is left out.
  mustSh(
      "ip link set lo up && ip addr add 10.255.255.1/32 dev lo && "
      "ip link add kn0 type veth peer name kn1 && "
      "ip addr add 192.0.2.10/24 dev kn0 && ip addr add 169.254.20.10/32 dev kn0 && "
      "ip addr add 2001:db8::10/64 dev kn0 nodad && ip link set kn0 up && ip link set kn1 up");

  auto nodes = host->nodeAddresses(kDummy);
  REQUIRE_MESSAGE(nodes.isOk(), nodes.status().toString());
  CHECK(*nodes ==
        std::vector<ipvs::Address>{ip("10.255.255.1"), ip("192.0.2.10"), ip("169.254.20.10"), ip("2001:db8::10")});

  mustSh("ip link del kn0 && ip addr del 10.255.255.1/32 dev lo");
  CHECK(host->unbindAddress(kDummy, ip("10.96.0.1")).isOk());
  CHECK(host->unbindAddress(kDummy, ip("fd00:10:96::1")).isOk());
}

bool haveIpvsSysctls() {
  struct stat st{};
  if (stat("/proc/sys/net/ipv4/vs", &st) == 0) return true;
  (void)sh("modprobe ip_vs");
  return stat("/proc/sys/net/ipv4/vs", &st) == 0;
}

TEST_CASE("sysctls: read, write, errors, and prepareIpvsSysctls on this kernel") {
  auto host = openHost();
  auto release = host->kernelRelease();
  REQUIRE(release.isOk());
  MESSAGE("kernel ", *release);

  // ip_forward exists in every netns.
  REQUIRE(host->setSysctl("net/ipv4/ip_forward", "0").isOk());
  CHECK(*host->getSysctl("net/ipv4/ip_forward") == "0");
  Status bad = host->setSysctl("net/ipv4/ip_forward", "abc");
  CHECK(bad.code() == Code::kKernel);
  CHECK(bad.errnum() == EINVAL);
  CHECK(bad.message().find("net/ipv4/ip_forward") != std::string::npos);
  CHECK(host->getSysctl("net/ipv4/no_such_thing").status().errnum() == ENOENT);

  if (!haveIpvsSysctls()) {
    REQUIRE_MESSAGE(!flags().requireIpvs, "no /proc/sys/net/ipv4/vs: ip_vs not available");
    MESSAGE("SKIPPED net/ipv4/vs sysctls: no ip_vs in this kernel");
    Status s = prepareIpvsSysctls(*host, *release, nullptr);
    CHECK(s.errnum() == ENOENT);
    CHECK(s.message().find("ip_vs") != std::string::npos);
    return;
  }
  auto version = parseKernelRelease(*release);
  REQUIRE(version.isOk());
  const ConnReuseAction reuse = connReuseActionFor(*version);
  const std::string reuseBefore = *host->getSysctl("net/ipv4/vs/conn_reuse_mode");

  // Start from values that differ, then from values that don't.
  for (const char* p : {"net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn",
                        "net/ipv4/vs/expire_quiescent_template", "net/ipv4/ip_forward"}) {
    REQUIRE(host->setSysctl(p, "0").isOk());
  }
  REQUIRE(host->setSysctl("net/ipv4/vs/expire_nodest_conn", "1").isOk());
  std::vector<std::string> changes;
  Status s = prepareIpvsSysctls(*host, *release, &changes);
  REQUIRE_MESSAGE(s.isOk(), s.toString());
  for (const auto& c : changes) MESSAGE("changed ", c);
  std::vector<std::string> want = {"net/ipv4/vs/conntrack: 0 -> 1"};
  if (reuse == ConnReuseAction::kSetZero && reuseBefore != "0") {
    want.push_back("net/ipv4/vs/conn_reuse_mode: " + reuseBefore + " -> 0");
  }
  want.push_back("net/ipv4/vs/expire_quiescent_template: 0 -> 1");
  want.push_back("net/ipv4/ip_forward: 0 -> 1");
  CHECK(changes == want);
  for (const char* p : {"net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn",
                        "net/ipv4/vs/expire_quiescent_template", "net/ipv4/ip_forward"}) {
    CAPTURE(p);
    CHECK(*host->getSysctl(p) == "1");
  }
  CHECK(*host->getSysctl("net/ipv4/vs/conn_reuse_mode") == (reuse == ConnReuseAction::kSetZero ? "0" : reuseBefore));

  changes.clear();
  REQUIRE(prepareIpvsSysctls(*host, *release, &changes).isOk());
  CHECK(changes.empty());

  // The 4.1..5.8 rule on this kernel's real file: only conn_reuse_mode moves.
  REQUIRE(host->setSysctl("net/ipv4/vs/conn_reuse_mode", "1").isOk());
  changes.clear();
  REQUIRE(prepareIpvsSysctls(*host, "5.4.0-150-generic", &changes).isOk());
  CHECK(changes == std::vector<std::string>{"net/ipv4/vs/conn_reuse_mode: 1 -> 0"});
  CHECK(*host->getSysctl("net/ipv4/vs/conn_reuse_mode") == "0");
}

// Nothing but lo: a namespace this test may change.
bool inFreshNetns() {
  Run links = sh("ip -o link show");
  if (links.rc != 0) return false;
  std::istringstream in(links.out);
  int count = 0;
  for (std::string line; std::getline(in, line);) {
    if (++count > 1 || line.find(": lo:") == std::string::npos) return false;
  }
  return count == 1;
}

}  // namespace
}  // namespace kipvs::controller

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--require-dummy") == 0) {
      kipvs::controller::flags().requireDummy = true;
    } else if (std::strcmp(argv[i], "--require-ipvs") == 0) {
      kipvs::controller::flags().requireIpvs = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  // Only ever in a namespace of our own, which has nothing but lo.
  if (!kipvs::controller::inFreshNetns()) {
    if (unshare(CLONE_NEWNET) != 0) {
      fprintf(stderr, "host_kernel_test: cannot make a network namespace (%s); run as root, or inside an empty one\n",
              strerror(errno));
      return 2;
    }
    if (!kipvs::controller::inFreshNetns()) {
      fprintf(stderr, "host_kernel_test: the new network namespace is not empty?\n");
      return 2;
    }
  }
  doctest::Context ctx(static_cast<int>(rest.size()), rest.data());
  return ctx.run();
}
