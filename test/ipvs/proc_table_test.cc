// ProcDestsReader: the /proc/net/ip_vs listing joined to a service dump.
// (test/kernel/client_smoke_test.cc holds it to the netlink read on a real kernel.)
#include "ipvs/proc_table.h"

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

Address A(const char* s) { return *Address::parse(s); }

const ServiceKey kWeb = ServiceKey::tcp(A("10.0.0.1"), 80);
const ServiceKey kDns = ServiceKey::make(Protocol::kUdp, A("fd00::53"), 53);
const ServiceKey kSticky = ServiceKey::tcp(A("10.0.0.2"), 443);
const ServiceKey kTunnelled = ServiceKey::tcp(A("10.0.0.3"), 80);
const ServiceKey kMark = ServiceKey::mark(Family::kV4, 5);
const ServiceKey kLate = ServiceKey::tcp(A("10.0.0.9"), 80);  // in the service dump, not in the listing

// As the kernel prints it (ip_vs_info_seq_show), trailing spaces included.
const std::string kListing =
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
    "TCP  0A000001:0050 rr  \n"
    "  -> AC100002:1F90      Masq    1      3          12        \n"
    "  -> AC100001:1F90      Masq    0      0          1         \n"
    "UDP  [fd00:0000:0000:0000:0000:0000:0000:0053]:0035 sh \n"
    "  -> [fd00:0001:0000:0000:0000:0000:0000:0001]:0035      Route   7      0          0         \n"
    "TCP  0A000002:01BB wlc persistent 10800 FFFFFFFF\n"
    "  -> 7F000001:01BB      Local   2      1          0         \n"
    "TCP  0A000003:0050 rr  \n"
    "  -> AC100009:0050      Tunnel  1      0          0         \n"
    "FWM  00000005 rr  \n"
    "  -> AC100005:0050      Masq    1      0          0         \n"
    "TCP  0A000063:0050 rr  \n"  // not in the service dump (created after it)
    "  -> AC100063:0050      Masq    1      0          0         \n";

Table serviceDump() {
  Table t;
  for (const ServiceKey& k : {kWeb, kDns, kSticky, kTunnelled, kMark, kLate}) t.services[k];
  return t;
}

std::set<ServiceKey> keys(const std::vector<ServiceRef>& refs) {
  std::set<ServiceKey> out;
  for (const auto& r : refs) out.insert(*r.first);
  return out;
}

void checkJoined(const Table& t, const std::vector<ServiceRef>& rest) {
  // Left to dests dumps: the fwmark service, the one with a tunnel dest, the one the listing lacks.
  CHECK(keys(rest) == std::set<ServiceKey>{kTunnelled, kMark, kLate});
  const auto& web = t.services.at(kWeb).dests;
  REQUIRE(web.size() == 2);
  const auto& a = web.at(DestKey{A("172.16.0.2"), 8080});
  CHECK(a.spec == DestSpec{FwdMethod::kMasq, 1, 0, 0, {}, 0, 0});
  CHECK(a.counters.activeConns == 3);
  CHECK(a.counters.inactiveConns == 12);
  const auto& b = web.at(DestKey{A("172.16.0.1"), 8080});
  CHECK(b.spec.weight == 0);
  CHECK(b.counters.inactiveConns == 1);
  const auto& dns = t.services.at(kDns).dests;
  REQUIRE(dns.size() == 1);
  CHECK(dns.at(DestKey{A("fd00:1::1"), 53}).spec.fwd == FwdMethod::kRoute);
  CHECK(dns.at(DestKey{A("fd00:1::1"), 53}).spec.weight == 7);
  const auto& sticky = t.services.at(kSticky).dests;
  REQUIRE(sticky.size() == 1);
  CHECK(sticky.at(DestKey{A("127.0.0.1"), 443}).spec.fwd == FwdMethod::kLocal);
  CHECK(sticky.at(DestKey{A("127.0.0.1"), 443}).counters.activeConns == 1);
  // What goes to netlink starts empty; nothing was added for the service the dump lacks.
  for (const auto& k : {kTunnelled, kMark, kLate}) CHECK(t.services.at(k).dests.empty());
  CHECK(t.services.size() == 6);
}

}  // namespace

TEST_CASE("proc listing: dests joined to the service dump; what it cannot vouch for is left to netlink") {
  Table t = serviceDump();
  ProcDestsReader r(t);
  REQUIRE(r.feed(kListing).isOk());
  auto rest = r.finish();
  REQUIRE_MESSAGE(rest.isOk(), rest.status().toString());
  CHECK(r.filled() == 3);
  checkJoined(t, *rest);
}

TEST_CASE("proc listing: the same table however the reads split it, lines cut included") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    Table t = serviceDump();
    ProcDestsReader r(t);
    size_t at = 0;
    while (at < kListing.size()) {
      const size_t n = round == 0 ? 1 : 1 + rng() % 90;  // round 0: a byte at a time
      REQUIRE(r.feed(std::string_view(kListing).substr(at, n)).isOk());
      at += n;
    }
    auto rest = r.finish();
    REQUIRE(rest.isOk());
    checkJoined(t, *rest);
  }
}

TEST_CASE("proc listing: a service listed twice (the table changed between reads) keeps its later listing") {
  Table t = serviceDump();
  ProcDestsReader r(t);
  REQUIRE(r.feed(kListing).isOk());
  REQUIRE(r.feed("TCP  0A000001:0050 rr  \n"
                 "  -> AC100007:1F90      Masq    1      0          0         \n")
              .isOk());
  auto rest = r.finish();
  REQUIRE(rest.isOk());
  const auto& web = t.services.at(kWeb).dests;
  REQUIRE(web.size() == 1);
  CHECK(web.count(DestKey{A("172.16.0.7"), 8080}) == 1);
}

TEST_CASE("proc listing: read stopped early, the service it stopped in and those not reached go to netlink") {
  Table t = serviceDump();
  ProcDestsReader r(t);
  // Stopped after kWeb's first dest: kWeb may be cut short.
  const size_t cut = kListing.find("  -> AC100001");
  REQUIRE(r.feed(std::string_view(kListing).substr(0, cut + 10)).isOk());  // and half a line
  r.stopEarly();
  auto rest = r.finish();
  REQUIRE(rest.isOk());
  CHECK(r.filled() == 0);
  CHECK(keys(*rest) == std::set<ServiceKey>{kWeb, kDns, kSticky, kTunnelled, kMark, kLate});
  CHECK(t.services.at(kWeb).dests.empty());
  // Stopped after kDns's record: kWeb was listed whole; kDns may not have been.
  Table t2 = serviceDump();
  ProcDestsReader r2(t2);
  REQUIRE(r2.feed(std::string_view(kListing).substr(0, kListing.find("TCP  0A000002"))).isOk());
  r2.stopEarly();
  auto rest2 = r2.finish();
  REQUIRE(rest2.isOk());
  CHECK(r2.filled() == 1);
  CHECK(t2.services.at(kWeb).dests.size() == 2);
  CHECK(keys(*rest2) == std::set<ServiceKey>{kDns, kSticky, kTunnelled, kMark, kLate});
}

TEST_CASE("proc listing: a malformed listing is an error naming the line") {
  auto errorOf = [](const std::string& text) {
    Table t = serviceDump();
    ProcDestsReader r(t);
    Status s = r.feed(text);
    if (s.isOk()) s = r.finish().status();
    return s;
  };
  const std::string head = kListing.substr(0, kListing.find("TCP"));
  Status s = errorOf("Something else entirely\n");
  CHECK(s.code() == Code::kParse);
  CHECK(s.message().find("unexpected first line") != std::string::npos);
  s = errorOf(head + "TCP  0A000001:0050 rr\n  -> AC100002:1F90      Masq    one   0          0\n");
  CHECK(s.code() == Code::kParse);
  CHECK(s.message().find("line 5") != std::string::npos);
  CHECK(s.message().find("bad weight") != std::string::npos);
  s = errorOf(head + "TCP  0A0001:0050 rr\n");
  CHECK(s.message().find("line 4: bad service address") != std::string::npos);
  s = errorOf(head + "TCP  [10.0.0.1]:0050 rr\n");  // brackets hold IPv6 only
  CHECK(s.code() == Code::kParse);
  CHECK(errorOf("").message().find("empty") != std::string::npos);
  // The same text, well formed, is fine: the errors above are the lines'.
  CHECK(errorOf(head + "TCP  0A000001:0050 rr\n  -> AC100002:1F90      Masq    1      0          0\n").isOk());
}
