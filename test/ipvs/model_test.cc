#include <arpa/inet.h>

#include <cstring>
#include <random>
#include <string>

#include <doctest/doctest.h>

#include "ipvs/client.h"
#include "ipvs/fake_client.h"
#include "ipvs/model.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {
Address A(const char* s) { return *Address::parse(s); }
}  // namespace

TEST_CASE("Address prints every IPv4 octet as inet_ntop does") {
  for (uint32_t b = 0; b < 256; ++b) {
    for (int pos = 0; pos < 4; ++pos) {
      const uint32_t host = (b << (8 * pos)) | (pos == 0 ? 0x01020300u : 0x00000007u);
      const uint32_t net = htonl(host);
      char want[INET_ADDRSTRLEN];
      REQUIRE(inet_ntop(AF_INET, &net, want, sizeof want) != nullptr);
      CHECK(Address::v4(host).toString() == want);
    }
  }
}

TEST_CASE("Address parses and prints both families") {
  CHECK(A("10.1.2.3").toString() == "10.1.2.3");
  CHECK(A("10.1.2.3").family == Family::kV4);
  CHECK(A("fd00::1").toString() == "fd00::1");
  CHECK(A("fd00::1").toBracketed() == "[fd00::1]");
  CHECK(A("fd00::1").family == Family::kV6);
  CHECK(Address::v4(0x0a000001).toString() == "10.0.0.1");
  CHECK(A("0.0.0.0").isUnspecified());
  CHECK(A("::").isUnspecified());
  CHECK_FALSE(A("::1").isUnspecified());
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "fd00:::1", "abc", "10.0.0.1/32", " 10.0.0.1"}) {
    auto r = Address::parse(bad);
    CHECK_FALSE(r.isOk());
    CHECK(r.status().message().find("invalid IP address") != std::string::npos);
  }
  CHECK(A("10.0.0.1") < A("10.0.0.2"));
  CHECK(A("10.0.0.1") != A("fd00::1"));
}

// Address orders by family, then its bytes in order, and is equal only when all agree.
TEST_CASE("Address compares like its family and bytes, in order") {
  std::mt19937 rng(11);
  auto random = [&] {
    Address a;
    a.family = rng() % 2 ? Family::kV4 : Family::kV6;
    for (auto& b : a.bytes) b = static_cast<uint8_t>(rng() % 3 == 0 ? rng() : rng() % 2);  // many ties
    return a;
  };
  for (int i = 0; i < 20000; ++i) {
    const Address a = random(), b = random();
    auto want = a.family != b.family ? a.family <=> b.family : a.bytes <=> b.bytes;
    CHECK((a <=> b) == want);
    CHECK((a == b) == (want == 0));
    CHECK((a <=> a) == std::strong_ordering::equal);
  }
}

// parse() reads dotted quads itself; it must agree with inet_pton on every input.
TEST_CASE("Address::parse agrees with inet_pton on IPv4-like text") {
  std::mt19937 rng(7);
  const std::string alphabet = "0123456789....:x ";
  auto agree = [](const std::string& s) {
    in_addr want{};
    const bool ok = inet_pton(AF_INET, s.c_str(), &want) == 1;
    auto got = Address::parse(s);
    if (ok) {
      REQUIRE_MESSAGE(got.isOk(), s);
      CHECK_MESSAGE(got->family == Family::kV4, s);
      CHECK_MESSAGE(std::memcmp(got->bytes.data(), &want, 4) == 0, s);
    } else if (got.isOk()) {
      CHECK_MESSAGE(got->family == Family::kV6, s);  // only inet_pton(AF_INET6) may accept it
    }
  };
  for (const char* s : {"0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1.2.3.0", "1..2.3",
                        "1.2.3.4.", ".1.2.3.4", "1.2.3", "1.2.3.4.5", "1234.1.1.1", "1.2.3.400", "99.99.99.99", "1.2.3.4 "}) {
    agree(s);
  }
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const int len = 1 + int(rng() % 17);
    for (int j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    agree(s);
    // And near-valid quads: four random groups of 0-4 digits.
    std::string q;
    for (int g = 0; g < 4; ++g) {
      if (g) q += '.';
      const int digits = int(rng() % 5);
      for (int d = 0; d < digits; ++d) q += char('0' + rng() % (d == 0 ? 3 : 10));
    }
    agree(q);
  }
}

TEST_CASE("ServiceKey and DestKey print like ipvsadm") {
  CHECK(ServiceKey::tcp(A("10.0.0.1"), 80).toString() == "TCP 10.0.0.1:80");
  CHECK(ServiceKey::make(Protocol::kUdp, A("fd00::1"), 53).toString() == "UDP [fd00::1]:53");
  CHECK(ServiceKey::mark(Family::kV6, 5).toString() == "FWM 5 IPv6");
  CHECK((DestKey{A("10.1.0.1"), 8080}).toString() == "10.1.0.1:8080");
  CHECK(parseProtocol("tcp") == Protocol::kTcp);
  CHECK(parseProtocol("SCTP") == Protocol::kSctp);
  CHECK_FALSE(parseProtocol("icmp").has_value());
}

TEST_CASE("normalize gives one canonical form") {
  ServiceKey k = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec s;
  s.flags = kSvcFlagHashed | kSvcFlagOnePacket;
  s.timeout = 300;  // meaningless without persistence
  normalize(k, s);
  CHECK(s.flags == kSvcFlagOnePacket);
  CHECK(s.timeout == 0);
  CHECK(s.netmask == 0xffffffffu);

  ServiceKey k6 = ServiceKey::tcp(A("fd00::1"), 80);
  ServiceSpec s6;
  s6.flags = kSvcFlagPersistent;
  s6.timeout = 60;
  normalize(k6, s6);
  CHECK(s6.netmask == 128);
  CHECK(s6.timeout == 60);

  ServiceKey f = ServiceKey::mark(Family::kV4, 9);
  f.port = 80;
  f.protocol = Protocol::kUdp;
  ServiceSpec fs;
  normalize(f, fs);
  CHECK(f.port == 0);
  CHECK(f.protocol == Protocol::kTcp);
  CHECK(f == ServiceKey::mark(Family::kV4, 9));

  // Route/tunnel dests of a port service take the service port (as ipvsadm does);
  // tunnel fields are zeroed unless tunnelling.
  DestKey dk{A("10.1.0.1"), 8080};
  DestSpec ds;
  ds.fwd = FwdMethod::kRoute;
  ds.tunPort = 99;
  normalize(k, dk, ds);
  CHECK(dk.port == 80);
  CHECK(ds.tunPort == 0);
  DestKey mk{A("10.1.0.1"), 8080};
  DestSpec ms;
  normalize(k, mk, ms);
  CHECK(mk.port == 8080);
}

TEST_CASE("validate rejects what the kernel would") {
  auto k = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec ok;
  CHECK(validateService(k, ok).isOk());
  ServiceSpec s = ok;
  s.scheduler = "";
  CHECK_FALSE(validateService(k, s).isOk());
  s.scheduler = "averyveryverylongname";
  CHECK_FALSE(validateService(k, s).isOk());
  s.scheduler = "RR;";
  CHECK_FALSE(validateService(k, s).isOk());
  s = ok;
  s.flags = 0x100;
  CHECK_FALSE(validateService(k, s).isOk());
  s = ok;
  s.netmask = 0xff00ff00;
  CHECK(validateService(k, s).message().find("contiguous") != std::string::npos);
  auto k6 = ServiceKey::tcp(A("fd00::1"), 80);
  s = ok;
  s.netmask = 129;
  CHECK_FALSE(validateService(k6, s).isOk());
  s.netmask = 64;
  CHECK(validateService(k6, s).isOk());

  DestSpec d;
  CHECK(validateDest(k, DestKey{A("10.1.0.1"), 80}, d).isOk());
  CHECK_FALSE(validateDest(k, DestKey{A("224.0.0.1"), 80}, d).isOk());
  CHECK_FALSE(validateDest(k, DestKey{A("0.0.0.0"), 80}, d).isOk());
  CHECK_FALSE(validateDest(k6, DestKey{A("fe80::1"), 80}, d).isOk());
  CHECK_FALSE(validateDest(k, DestKey{A("fd00::1"), 80}, d).isOk());  // mixed family without tunnel
  DestSpec t = d;
  t.fwd = FwdMethod::kTunnel;
  CHECK(validateDest(k, DestKey{A("fd00::1"), 80}, t).isOk());
  t.tunType = TunnelType::kGue;
  CHECK_FALSE(validateDest(k, DestKey{A("fd00::1"), 80}, t).isOk());
  d.lowerThreshold = 5;
  d.upperThreshold = 1;
  Status r = validateDest(k, DestKey{A("10.1.0.1"), 80}, d);
  CHECK(r.errnum() == ERANGE);
  CHECK(r.message().find("10.1.0.1:80") != std::string::npos);
  d = DestSpec{};
  d.weight = -1;
  CHECK(validateDest(k, DestKey{A("10.1.0.1"), 80}, d).errnum() == ERANGE);
}

TEST_CASE("Status carries the raw errno and names it") {
  Status s = Status::kernel(ESRCH, "add-dest TCP 10.0.0.1:80 -> 10.1.0.1:80");
  CHECK(s.errnum() == ESRCH);
  CHECK(s.toString() == "add-dest TCP 10.0.0.1:80 -> 10.1.0.1:80: No such process (ESRCH)");
  CHECK(Status::kernel(ENOENT, "x").toString() == "x: No such file or directory (ENOENT)");
  CHECK(Status().toString() == "OK");
  StatusOr<int> v = 5;
  CHECK(v.isOk());
  CHECK(*v == 5);
  StatusOr<int> e = Status::invalid("bad");
  CHECK_FALSE(e.isOk());
  CHECK(e.status().errnum() == EINVAL);
}

TEST_CASE("Op descriptions name the op, service and dest") {
  auto k = ServiceKey::tcp(A("10.0.0.1"), 80);
  DestSpec d;
  d.weight = 0;
  CHECK(Op::updateDest(k, DestKey{A("10.1.0.1"), 80}, d).toString() ==
        "update-dest TCP 10.0.0.1:80 -> 10.1.0.1:80 masq weight 0");
  CHECK(Op::deleteService(k).toString() == "delete-service TCP 10.0.0.1:80");
  ServiceSpec s;
  s.scheduler = "sh";
  s.flags = kSvcFlagPersistent;
  s.timeout = 10800;
  CHECK(Op::addService(k, s).toString() == "add-service TCP 10.0.0.1:80 scheduler sh persistent 10800s");
}

TEST_CASE("fake: HASHED is stored like the kernel, masked in dumps; faults inject") {
  FakeIpvsClient f;
  auto k = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec s;
  s.netmask = 0xffffffff;
  REQUIRE(f.addService(k, s).isOk());
  CHECK(f.rawFlags(k) == kSvcFlagHashed);
  CHECK(f.dumpTable()->services.at(k).spec.flags == 0);
  f.failNext(k, ENOBUFS);
  CHECK(f.addDest(k, DestKey{A("10.1.0.1"), 80}, DestSpec{}).errnum() == ENOBUFS);
  CHECK(f.addDest(k, DestKey{A("10.1.0.1"), 80}, DestSpec{}).isOk());
  f.setSchedulers({"rr"});
  CHECK(f.updateService(k, ServiceSpec{"wrr", 0, 0, 0xffffffff, ""}).errnum() == ENOENT);
  f.failDumps(EAGAIN);
  CHECK(f.dumpTable().status().errnum() == EAGAIN);
}

TEST_CASE("normalize(Table) fixes specs in place and re-keys what changes") {
  Table t;
  ServiceKey fw = ServiceKey::mark(Family::kV4, 3);
  fw.port = 99;  // not canonical: re-keyed
  ServiceKey k = ServiceKey::tcp(A("10.0.0.1"), 80);
  t.services[k].spec.flags = kSvcFlagHashed;
  DestSpec route;
  route.fwd = FwdMethod::kRoute;
  t.services[k].dests[DestKey{A("10.1.0.1"), 8080}].spec = route;  // re-keyed to the service port
  t.services[k].dests[DestKey{A("10.1.0.2"), 8080}].spec = DestSpec{};
  t.services[fw].spec.scheduler = "wrr";
  normalize(t);
  REQUIRE(t.services.size() == 2);
  CHECK(t.services.at(ServiceKey::mark(Family::kV4, 3)).spec.scheduler == "wrr");
  const auto& s = t.services.at(k);
  CHECK(s.spec.flags == 0);
  CHECK(s.spec.netmask == 0xffffffffu);
  CHECK(s.dests.count(DestKey{A("10.1.0.1"), 80}) == 1);
  CHECK(s.dests.count(DestKey{A("10.1.0.1"), 8080}) == 0);
  CHECK(s.dests.count(DestKey{A("10.1.0.2"), 8080}) == 1);
}
