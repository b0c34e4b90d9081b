#pragma once
// The conformance suite: one set of cases, run against the fake (unit tests)
// and against the real kernel (kernel tests, fresh network namespace per case).
// If the fake drifts from the kernel, one of the two runs fails.
//
// An Env provides: `std::unique_ptr<ipvs::IpvsClient> client` (empty table) and
// `static constexpr bool kReal`.

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "ipvs/client.h"
#include "ipvs/model.h"

namespace kipvs::conformance {

using namespace kipvs::ipvs;

inline Address addr(const char* s) {
  auto a = Address::parse(s);
  REQUIRE_MESSAGE(a.isOk(), s);
  return *a;
}

inline ServiceKey tcp(const char* a, uint16_t port) { return ServiceKey::tcp(addr(a), port); }

inline ServiceSpec sched(const std::string& name, uint32_t flags = 0, uint32_t timeout = 0) {
  ServiceSpec s;
  s.scheduler = name;
  s.flags = flags;
  s.timeout = timeout;
  return s;
}

// What we send: normalized, as the planner always sends.
inline ServiceSpec norm(const ServiceKey& k, ServiceSpec s) {
  ServiceKey key = k;
  normalize(key, s);
  return s;
}

inline DestSpec masq(int32_t weight = 1) {
  DestSpec d;
  d.weight = weight;
  return d;
}

inline DestKey dest(const char* a, uint16_t port) { return DestKey{addr(a), port}; }

inline void requireOk(const Status& s) { REQUIRE_MESSAGE(s.isOk(), s.toString()); }

inline void checkErrno(const Status& s, int errnum) {
  CHECK_MESSAGE(s.errnum() == errnum, "got " << s.toString() << ", want " << errnoName(errnum));
  CHECK_FALSE(s.isOk());
}

inline ServiceState dumpOne(IpvsClient& c, const ServiceKey& k) {
  auto r = c.dumpService(k);
  REQUIRE_MESSAGE(r.isOk(), r.status().toString());
  REQUIRE_MESSAGE(r->has_value(), "service " << k.toString() << " missing from dump");
  return **r;
}

}  // namespace kipvs::conformance

TEST_CASE_TEMPLATE_DEFINE("conformance", Env, conformance_suite) {
  using namespace kipvs;
  using namespace kipvs::conformance;
  Env env;
  IpvsClient& c = *env.client;

  SUBCASE("empty table dumps empty; unknown service dumps nothing") {
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    CHECK(t->services.empty());
    auto one = c.dumpService(tcp("10.0.0.1", 80));
    REQUIRE(one.isOk());
    CHECK_FALSE(one->has_value());
  }

  SUBCASE("add service, read back normalized, HASHED masked") {
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    REQUIRE(t->services.size() == 1);
    CHECK(t->services.begin()->first == k);
    const ServiceSpec& got = t->services.begin()->second.spec;
    CHECK(got.scheduler == "rr");
    CHECK(got.flags == 0);
    CHECK(got.netmask == 0xffffffffu);
    CHECK(got.timeout == 0);
  }

  SUBCASE("service errnos: EEXIST, ESRCH, ENOENT for a missing scheduler") {
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    checkErrno(c.addService(k, norm(k, sched("rr"))), EEXIST);
    auto missing = tcp("10.0.0.2", 80);
    checkErrno(c.updateService(missing, norm(missing, sched("rr"))), ESRCH);
    checkErrno(c.deleteService(missing), ESRCH);
    checkErrno(c.addService(missing, norm(missing, sched("nosuchsched"))), ENOENT);
    auto after = c.dumpService(missing);
    REQUIRE(after.isOk());
    CHECK_FALSE(after->has_value());
    requireOk(c.deleteService(k));
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    CHECK(t->services.empty());
  }

  SUBCASE("dest errnos: ESRCH for a missing service, EEXIST, ENOENT") {
    auto k = tcp("10.0.0.1", 80);
    auto d = dest("10.1.0.1", 8080);
    checkErrno(c.addDest(k, d, masq()), ESRCH);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    requireOk(c.addDest(k, d, masq()));
    checkErrno(c.addDest(k, d, masq()), EEXIST);
    checkErrno(c.updateDest(k, dest("10.1.0.2", 8080), masq()), ENOENT);
    checkErrno(c.deleteDest(k, dest("10.1.0.2", 8080)), ENOENT);
    requireOk(c.deleteDest(k, d));
    CHECK(dumpOne(c, k).dests.empty());
  }

  SUBCASE("dest validation: non-unicast EINVAL, thresholds ERANGE, mixed family needs tunnel") {
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    checkErrno(c.addDest(k, dest("224.0.0.1", 80), masq()), EINVAL);
    checkErrno(c.addDest(k, dest("0.0.0.0", 80), masq()), EINVAL);
    checkErrno(c.addDest(k, dest("255.255.255.255", 80), masq()), EINVAL);
    DestSpec bad = masq();
    bad.lowerThreshold = 10;
    bad.upperThreshold = 5;
    checkErrno(c.addDest(k, dest("10.1.0.1", 80), bad), ERANGE);
    checkErrno(c.addDest(k, dest("fd00::1", 80), masq()), EINVAL);
    DestSpec gue = masq();
    gue.fwd = FwdMethod::kTunnel;
    gue.tunType = TunnelType::kGue;
    gue.tunPort = 0;
    checkErrno(c.addDest(k, dest("10.1.0.1", 80), gue), EINVAL);
    CHECK(dumpOne(c, k).dests.empty());
  }

  SUBCASE("an IPv4-mapped IPv6 real server is EINVAL (ipv6_addr_type: not unicast)") {
    auto k = ServiceKey::tcp(addr("fd00::10"), 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    checkErrno(c.addDest(k, dest("::ffff:10.1.0.1", 80), masq()), EINVAL);
    requireOk(c.addDest(k, dest("fd00:1::1", 80), masq()));
    CHECK(dumpOne(c, k).dests.size() == 1);
  }

  SUBCASE("names longer than the kernel's attribute policy allows are EINVAL, not ENOENT") {
    auto k = tcp("10.0.0.1", 80);
    checkErrno(c.addService(k, norm(k, sched("sixteen-chars-xx"))), EINVAL);
    ServiceSpec pe = norm(k, sched("rr"));
    pe.pe = "seventeen-chars-x";
    checkErrno(c.addService(k, pe), EINVAL);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    checkErrno(c.updateService(k, norm(k, sched("sixteen-chars-xx"))), EINVAL);
    CHECK(dumpOne(c, k).spec.scheduler == "rr");
  }

  SUBCASE("entries kipvs never makes, which the kernel takes from other tools, read back as made") {
    // A table read that failed on any of them would stop every reconcile.
    ServiceKey icmp = ServiceKey::make(static_cast<Protocol>(1), addr("10.0.0.2"), 0);
    requireOk(c.addService(icmp, norm(icmp, sched("rr"))));
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    DestSpec fwd5 = masq();
    fwd5.fwd = static_cast<FwdMethod>(5);
    requireOk(c.addDest(k, dest("10.1.0.1", 80), fwd5));
    DestSpec tun3 = masq();  // IP_VS_CONN_F_TUNNEL_TYPE_MAX itself passes ip_vs_add_dest's check
    tun3.fwd = FwdMethod::kTunnel;
    tun3.tunType = static_cast<TunnelType>(3);
    requireOk(c.addDest(k, dest("10.1.0.2", 80), tun3));
    auto t = c.dumpTable();
    REQUIRE_MESSAGE(t.isOk(), t.status().toString());
    CHECK(t->services.count(icmp) == 1);
    REQUIRE(t->services.count(k) == 1);
    const auto& ds = t->services.at(k).dests;
    REQUIRE(ds.size() == 2);
    CHECK(static_cast<uint32_t>(ds.at(dest("10.1.0.1", 80)).spec.fwd) == 5);
    CHECK(static_cast<int>(ds.at(dest("10.1.0.2", 80)).spec.tunType) == 3);
    requireOk(c.deleteService(icmp));
  }

  SUBCASE("IPv6 netmask outside 1..128 is EINVAL") {
    auto k = ServiceKey::tcp(addr("fd00::10"), 443);
    ServiceSpec s = sched("rr", kSvcFlagPersistent, 60);
    s.netmask = 129;
    checkErrno(c.addService(k, s), EINVAL);
    s.netmask = 64;
    requireOk(c.addService(k, s));
    CHECK(dumpOne(c, k).spec.netmask == 64);
  }

  SUBCASE("every scheduler the kernel offers") {
    const char* names[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"};
    uint16_t port = 1000;
    for (const char* n : names) {
      auto k = tcp("10.0.0.1", port++);
      requireOk(c.addService(k, norm(k, sched(n))));
      requireOk(c.addDest(k, dest("10.1.0.1", 80), masq(3)));
    }
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    CHECK(t->services.size() == std::size(names));
    port = 1000;
    for (const char* n : names) {
      const auto& s = t->services.at(tcp("10.0.0.1", port++));
      CHECK(s.spec.scheduler == n);
      CHECK(s.dests.size() == 1);
    }
  }

  SUBCASE("features round-trip: persistence, sh flags, one-packet UDP, SCTP, IPv6, fwmark, thresholds, tunnel") {
    Table want;
    auto add = [&](const ServiceKey& k, ServiceSpec s) {
      s = norm(k, s);
      requireOk(c.addService(k, s));
      want.services[k].spec = s;
    };
    auto addD = [&](const ServiceKey& k, const DestKey& d, const DestSpec& s) {
      requireOk(c.addDest(k, d, s));
      want.services[k].dests[d].spec = s;
    };
    auto p = tcp("10.0.0.1", 80);
    ServiceSpec ps = sched("wlc", kSvcFlagPersistent, 3600);
    ps.netmask = 0xffffff00;
    add(p, ps);
    addD(p, dest("10.1.0.1", 80), masq(0));
    DestSpec th = masq(5);
    th.upperThreshold = 100;
    th.lowerThreshold = 50;
    addD(p, dest("10.1.0.2", 80), th);

    auto shk = tcp("10.0.0.2", 443);
    add(shk, sched("sh", kSvcFlagSched1 | kSvcFlagSched2));
    addD(shk, dest("10.1.0.3", 443), masq());

    auto udp = ServiceKey::make(Protocol::kUdp, addr("10.0.0.3"), 53);
    add(udp, sched("rr", kSvcFlagOnePacket));
    addD(udp, dest("10.1.0.4", 53), masq());

    auto sctp = ServiceKey::make(Protocol::kSctp, addr("10.0.0.4"), 3868);
    add(sctp, sched("lc"));
    addD(sctp, dest("10.1.0.5", 3868), masq());

    auto v6 = ServiceKey::tcp(addr("fd00::10"), 80);
    add(v6, sched("mh", kSvcFlagSched1));
    addD(v6, dest("fd00:1::1", 8080), masq(2));
    DestSpec tun = masq(1);
    tun.fwd = FwdMethod::kTunnel;
    tun.tunType = TunnelType::kGue;
    tun.tunPort = 6080;
    tun.tunFlags = kTunFlagCsum;
    addD(v6, DestKey{addr("10.1.0.9"), 80}, tun);  // mixed family: allowed with tunnel

    auto fwm = ServiceKey::mark(Family::kV4, 7);
    add(fwm, sched("rr"));
    addD(fwm, dest("10.1.0.6", 0), masq());
    DestSpec dr = masq();
    dr.fwd = FwdMethod::kRoute;
    addD(fwm, dest("10.1.0.7", 0), dr);
    auto fwm6 = ServiceKey::mark(Family::kV6, 8);
    add(fwm6, sched("rr"));

    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    normalize(want);
    REQUIRE(t->services.size() == want.services.size());
    for (const auto& [k, s] : want.services) {
      INFO("service " << k.toString());
      auto it = t->services.find(k);
      REQUIRE(it != t->services.end());
      CHECK(it->second.spec == s.spec);
      REQUIRE(it->second.dests.size() == s.dests.size());
      for (const auto& [dk, ds] : s.dests) {
        INFO("dest " << dk.toString());
        auto d = it->second.dests.find(dk);
        REQUIRE(d != it->second.dests.end());
        CHECK(d->second.spec == ds.spec);
      }
    }
  }

  SUBCASE("a route real server keeps the port it was given; an IPv4 netmask of 0 reads as 0") {
    // Only ipvsadm moves a route/tunnel real server to the service's port;
    // over netlink the kernel keeps what it is given, and a read must show it,
    // or the real server could never be deleted by its key.
    auto k = tcp("10.0.0.1", 80);
    ServiceSpec wide = norm(k, sched("rr", kSvcFlagPersistent, 600));
    wide.netmask = 0;  // a /0: every client shares one persistence template
    requireOk(c.addService(k, wide));
    DestSpec dr = masq();
    dr.fwd = FwdMethod::kRoute;
    requireOk(c.addDest(k, dest("10.1.0.7", 8080), dr));
    auto s = dumpOne(c, k);
    CHECK(s.spec.netmask == 0u);
    REQUIRE(s.dests.size() == 1);
    CHECK(s.dests.count(dest("10.1.0.7", 8080)) == 1);
    checkErrno(c.deleteDest(k, dest("10.1.0.7", 80)), ENOENT);
    requireOk(c.deleteDest(k, dest("10.1.0.7", 8080)));
    CHECK(dumpOne(c, k).dests.empty());
  }

  SUBCASE("edits in place keep the service and its dests") {
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    requireOk(c.addDest(k, dest("10.1.0.1", 80), masq(1)));
    requireOk(c.addDest(k, dest("10.1.0.2", 80), masq(1)));
    requireOk(c.updateService(k, norm(k, sched("wrr", kSvcFlagPersistent, 600))));
    requireOk(c.updateDest(k, dest("10.1.0.1", 80), masq(0)));
    auto s = dumpOne(c, k);
    CHECK(s.spec.scheduler == "wrr");
    CHECK(s.spec.flags == kSvcFlagPersistent);
    CHECK(s.spec.timeout == 600);
    REQUIRE(s.dests.size() == 2);
    CHECK(s.dests.at(dest("10.1.0.1", 80)).spec.weight == 0);
    CHECK(s.dests.at(dest("10.1.0.2", 80)).spec.weight == 1);
    // Back to non-persistent: the flag clears (we send the full flag mask).
    requireOk(c.updateService(k, norm(k, sched("rr"))));
    CHECK(dumpOne(c, k).spec.flags == 0);
  }

  SUBCASE("a batch returns one status per op, in order") {
    auto k = tcp("10.0.0.1", 80);
    auto gone = tcp("10.0.0.9", 80);
    std::vector<Op> ops = {
        Op::addService(k, norm(k, sched("rr"))),
        Op::addService(k, norm(k, sched("rr"))),             // EEXIST
        Op::addDest(k, dest("10.1.0.1", 80), masq()),
        Op::addDest(gone, dest("10.1.0.1", 80), masq()),     // ESRCH
        Op::addDest(k, dest("10.1.0.2", 80), masq()),
        Op::deleteDest(k, dest("10.1.0.3", 80)),             // ENOENT
        Op::updateDest(k, dest("10.1.0.2", 80), masq(7)),
    };
    uint64_t before = c.writeCount();
    std::vector<Status> r = c.apply(ops);
    CHECK(c.writeCount() - before == ops.size());
    REQUIRE(r.size() == ops.size());
    CHECK(r[0].isOk());
    checkErrno(r[1], EEXIST);
    CHECK(r[2].isOk());
    checkErrno(r[3], ESRCH);
    CHECK(r[4].isOk());
    checkErrno(r[5], ENOENT);
    CHECK(r[6].isOk());
    auto s = dumpOne(c, k);
    REQUIRE(s.dests.size() == 2);
    CHECK(s.dests.at(dest("10.1.0.2", 80)).spec.weight == 7);
  }

  SUBCASE("a large batch: 300 services x 5 dests in one apply") {
    std::vector<Op> ops;
    for (uint32_t i = 0; i < 300; ++i) {
      auto k = ServiceKey::tcp(Address::v4(0x0a000000u + i), 80);
      ops.push_back(Op::addService(k, norm(k, sched("rr"))));
    }
    for (uint32_t i = 0; i < 300; ++i) {
      auto k = ServiceKey::tcp(Address::v4(0x0a000000u + i), 80);
      for (uint32_t j = 0; j < 5; ++j) ops.push_back(Op::addDest(k, DestKey{Address::v4(0xac100000u + i * 8 + j), 8080}, masq()));
    }
    auto r = c.apply(ops);
    REQUIRE(r.size() == ops.size());
    size_t ok = 0;
    for (auto& s : r) ok += s.isOk();
    CHECK(ok == ops.size());
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    CHECK(t->services.size() == 300);
    CHECK(t->destCount() == 1500);
  }

  SUBCASE("timeouts, zero, info") {
    auto t0 = c.getTimeouts();
    REQUIRE(t0.isOk());
    requireOk(c.setTimeouts(Timeouts{1000, 30, 200}));
    auto t1 = c.getTimeouts();
    REQUIRE(t1.isOk());
    CHECK(*t1 == Timeouts{1000, 30, 200});
    requireOk(c.setTimeouts(Timeouts{0, 0, 250}));  // 0 leaves a value alone
    CHECK(*c.getTimeouts() == Timeouts{1000, 30, 250});
    // Past INT_MAX jiffies (at any HZ from 100): EINVAL, and nothing changes.
    checkErrno(c.setTimeouts(Timeouts{30000000, 0, 0}), EINVAL);
    CHECK(*c.getTimeouts() == Timeouts{1000, 30, 250});
    requireOk(c.setTimeouts(*t0));

    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    requireOk(c.zero(k));
    requireOk(c.zero(std::nullopt));
    checkErrno(c.zero(tcp("10.0.0.2", 80)), ESRCH);

    auto i = c.info();
    REQUIRE(i.isOk());
    CHECK(i->version >= 0x010200);
    CHECK(i->connTableSize > 0);
  }

  SUBCASE("flush empties the table") {
    auto k = tcp("10.0.0.1", 80);
    requireOk(c.addService(k, norm(k, sched("rr"))));
    requireOk(c.flush());
    auto t = c.dumpTable();
    REQUIRE(t.isOk());
    CHECK(t->services.empty());
  }
}
