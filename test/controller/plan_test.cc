#include <doctest/doctest.h>

#include "controller/apply.h"
#include "controller/plan.h"
#include "ipvs/fake_client.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using namespace kipvs::controller;

namespace {

Address A(const char* s) { return *Address::parse(s); }
ServiceKey svc(const char* a, uint16_t port, Protocol p = Protocol::kTcp) { return ServiceKey::make(p, A(a), port); }
DestKey dst(const char* a, uint16_t port) { return DestKey{A(a), port}; }

ServiceSpec spec(const char* sched = "rr") {
  ServiceSpec s;
  s.scheduler = sched;
  s.netmask = 0xffffffff;
  return s;
}

DestSpec w(int32_t weight) {
  DestSpec d;
  d.weight = weight;
  return d;
}

void put(Table& t, const ServiceKey& k, const ServiceSpec& s, std::initializer_list<std::pair<DestKey, int32_t>> dests) {
  auto& st = t.services[k];
  st.spec = s;
  for (auto& [dk, weight] : dests) st.dests[dk].spec = w(weight);
}

std::vector<std::string> opStrings(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& sp : p.services)
    for (const auto& op : sp.ops) out.push_back(op.toString());
  return out;
}

Ownership ownAll(std::initializer_list<const char*> vips) {
  Ownership o;
  for (auto v : vips) o.vips.insert(A(v));
  o.nodeIps.insert(A("192.168.1.10"));
  return o;
}

}  // namespace

TEST_CASE("plan: empty actual -> service first, then its dests, in order") {
  Table desired, actual;
  put(desired, svc("10.96.0.1", 80), spec(), {{dst("10.244.0.2", 8080), 1}, {dst("10.244.0.1", 8080), 1}});
  Plan p = plan(desired, actual, ownAll({}));
  CHECK(opStrings(p) == std::vector<std::string>{
                            "add-service TCP 10.96.0.1:80 scheduler rr",
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.1:8080 masq weight 1",
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.2:8080 masq weight 1",
                        });
  CHECK(p.services.front().action == ServicePlan::Action::kCreate);
}

TEST_CASE("plan: converged table plans to nothing") {
  Table t;
  put(t, svc("10.96.0.1", 80), spec(), {{dst("10.244.0.1", 8080), 1}});
  put(t, svc("10.96.0.2", 53, Protocol::kUdp), spec("lc"), {{dst("10.244.0.3", 53), 1}});
  Plan p = plan(t, t, ownAll({"10.96.0.1", "10.96.0.2"}));
  CHECK(p.empty());
  CHECK(p.services.empty());
  CHECK(p.leftAlone.empty());
}

TEST_CASE("plan: scheduler / flag / weight changes are edits in place") {
  Table desired, actual;
  put(actual, svc("10.96.0.1", 80), spec("rr"), {{dst("10.244.0.1", 8080), 1}, {dst("10.244.0.2", 8080), 1}});
  ServiceSpec s = spec("sh");
  s.flags = kSvcFlagSched1;
  put(desired, svc("10.96.0.1", 80), s, {{dst("10.244.0.1", 8080), 4}, {dst("10.244.0.2", 8080), 1}});
  Plan p = plan(desired, actual, ownAll({"10.96.0.1"}));
  CHECK(opStrings(p) == std::vector<std::string>{
                            "update-service TCP 10.96.0.1:80 scheduler sh flag-1",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.1:8080 masq weight 4",
                        });
}

TEST_CASE("plan: new dests before old ones go; a TCP dest with connections drains at weight 0") {
  Table desired, actual;
  auto k = svc("10.96.0.1", 80);
  put(actual, k, spec(), {{dst("10.244.0.1", 8080), 1}, {dst("10.244.0.2", 8080), 1}, {dst("10.244.0.3", 8080), 1}});
  actual.services[k].dests[dst("10.244.0.1", 8080)].counters.activeConns = 2;
  actual.services[k].dests[dst("10.244.0.2", 8080)].counters.inactiveConns = 0;
  put(desired, k, spec(), {{dst("10.244.0.3", 8080), 1}, {dst("10.244.0.9", 8080), 1}});
  Plan p = plan(desired, actual, ownAll({"10.96.0.1"}));
  CHECK(opStrings(p) == std::vector<std::string>{
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.9:8080 masq weight 1",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.1:8080 masq weight 0",
                            "delete-dest TCP 10.96.0.1:80 -> 10.244.0.2:8080",
                        });
  REQUIRE(p.drainingCount() == 1);
  CHECK(p.services[0].draining[0].dest == dst("10.244.0.1", 8080));
  CHECK(p.services[0].draining[0].activeConns == 2);

  SUBCASE("once at weight 0 and still busy: no write, still draining") {
    actual.services[k].dests[dst("10.244.0.1", 8080)].spec.weight = 0;
    actual.services[k].dests.erase(dst("10.244.0.2", 8080));
    actual.services[k].dests[dst("10.244.0.9", 8080)].spec = w(1);
    Plan p2 = plan(desired, actual, ownAll({"10.96.0.1"}));
    CHECK(p2.empty());
    CHECK(p2.drainingCount() == 1);
  }
  SUBCASE("drained: deleted") {
    actual.services[k].dests[dst("10.244.0.1", 8080)].counters = DestCounters{};
    Plan p2 = plan(desired, actual, ownAll({"10.96.0.1"}));
    CHECK(opStrings(p2) == std::vector<std::string>{
                               "add-dest TCP 10.96.0.1:80 -> 10.244.0.9:8080 masq weight 1",
                               "delete-dest TCP 10.96.0.1:80 -> 10.244.0.1:8080",
                               "delete-dest TCP 10.96.0.1:80 -> 10.244.0.2:8080",
                           });
    CHECK(p2.drainingCount() == 0);
  }
}

TEST_CASE("plan: within a service, adds, then edits, then quiescing, then deletes, each in key order") {
  // The dests interleave by key, so the order is the plan's, not the walk's.
  Table desired, actual;
  auto k = svc("10.96.0.1", 80);
  put(actual, k, spec(),
      {{dst("10.244.0.1", 8080), 1}, {dst("10.244.0.2", 8080), 1}, {dst("10.244.0.4", 8080), 1},
       {dst("10.244.0.6", 8080), 1}, {dst("10.244.0.8", 8080), 1}});
  actual.services[k].dests[dst("10.244.0.1", 8080)].counters.activeConns = 1;   // leaves, busy
  actual.services[k].dests[dst("10.244.0.6", 8080)].counters.inactiveConns = 3; // leaves, busy
  put(desired, k, spec(),
      {{dst("10.244.0.0", 8080), 1}, {dst("10.244.0.2", 8080), 5}, {dst("10.244.0.5", 8080), 1},
       {dst("10.244.0.8", 8080), 2}, {dst("10.244.0.9", 8080), 1}});
  Plan p = plan(desired, actual, ownAll({"10.96.0.1"}));
  CHECK(opStrings(p) == std::vector<std::string>{
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.0:8080 masq weight 1",
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.5:8080 masq weight 1",
                            "add-dest TCP 10.96.0.1:80 -> 10.244.0.9:8080 masq weight 1",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.2:8080 masq weight 5",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.8:8080 masq weight 2",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.1:8080 masq weight 0",
                            "update-dest TCP 10.96.0.1:80 -> 10.244.0.6:8080 masq weight 0",
                            "delete-dest TCP 10.96.0.1:80 -> 10.244.0.4:8080",
                        });
  CHECK(p.drainingCount() == 2);
}

TEST_CASE("plan: UDP and SCTP dests go at once even with connections") {
  for (Protocol proto : {Protocol::kUdp, Protocol::kSctp}) {
    Table desired, actual;
    auto k = svc("10.96.0.10", 53, proto);
    put(actual, k, spec(), {{dst("10.244.0.1", 53), 1}});
    actual.services[k].dests.begin()->second.counters.inactiveConns = 5;
    put(desired, k, spec(), {});
    Plan p = plan(desired, actual, ownAll({"10.96.0.10"}));
    REQUIRE(opStrings(p).size() == 1);
    CHECK(opStrings(p)[0].rfind("delete-dest", 0) == 0);
    CHECK(p.drainingCount() == 0);
  }
}

TEST_CASE("plan: stale owned services are deleted last; foreign ones left alone") {
  Table desired, actual;
  put(desired, svc("10.96.0.5", 80), spec(), {});
  put(actual, svc("10.96.0.1", 80), spec(), {{dst("10.244.0.1", 80), 1}});  // ours (VIP bound), stale
  put(actual, svc("192.168.1.10", 30080), spec(), {});                       // our NodePort, stale
  put(actual, svc("192.168.1.10", 22), spec(), {});                          // node IP, not NodePort range
  put(actual, svc("172.16.5.5", 80), spec(), {});                            // keepalived's
  Plan p = plan(desired, actual, ownAll({"10.96.0.1", "10.96.0.5"}));
  CHECK(opStrings(p) == std::vector<std::string>{
                            "add-service TCP 10.96.0.5:80 scheduler rr",
                            "delete-service TCP 10.96.0.1:80",
                            "delete-service TCP 192.168.1.10:30080",
                        });
  CHECK(p.leftAlone == std::vector<ServiceKey>{svc("172.16.5.5", 80), svc("192.168.1.10", 22)});
}

TEST_CASE("planKeys plans only the named services, same result as the full plan for them") {
  Table desired, actual;
  for (uint32_t i = 0; i < 50; ++i) {
    auto k = ServiceKey::tcp(Address::v4(0x0a600000u + i), 80);
    put(desired, k, spec(), {{DestKey{Address::v4(0x0af40000u + i), 8080}, 1}});
    put(actual, k, spec(), {{DestKey{Address::v4(0x0af40000u + i), 8080}, 1}});
  }
  auto k7 = ServiceKey::tcp(Address::v4(0x0a600007u), 80);
  desired.services[k7].dests[DestKey{A("10.244.9.9"), 8080}].spec = w(1);
  auto gone = ServiceKey::tcp(Address::v4(0x0a600009u), 80);
  desired.services.erase(gone);
  Ownership own;
  for (auto& [k, s] : actual.services) own.vips.insert(k.address);

  std::vector<ServiceKey> keys = {k7, gone, k7};
  Plan inc = planKeys(desired, actual, own, keys);
  Plan full = plan(desired, actual, own);
  CHECK(opStrings(inc) == opStrings(full));
  CHECK(opStrings(inc) == std::vector<std::string>{"add-dest TCP 10.96.0.7:80 -> 10.244.9.9:8080 masq weight 1",
                                                   "delete-service TCP 10.96.0.9:80"});
  std::vector<ServiceKey> untouched = {ServiceKey::tcp(Address::v4(0x0a600001u), 80)};
  CHECK(planKeys(desired, actual, own, untouched).empty());
}

TEST_CASE("apply: converged after one pass, and a second pass makes zero writes") {
  FakeIpvsClient fake;
  Table desired;
  put(desired, svc("10.96.0.1", 80), spec(), {{dst("10.244.0.1", 8080), 1}, {dst("10.244.0.2", 8080), 1}});
  put(desired, svc("10.96.0.2", 443), spec("wrr"), {{dst("10.244.0.3", 8443), 3}});
  auto own = ownAll({"10.96.0.1", "10.96.0.2"});
  Plan p = plan(desired, *fake.dumpTable(), own);
  ApplyReport r = apply(p, fake);
  CHECK(r.ok());
  CHECK(r.succeeded == 5);
  CHECK(fake.writeCount() == 5);
  Plan again = plan(desired, *fake.dumpTable(), own);
  CHECK(again.empty());
  ApplyReport r2 = apply(again, fake);
  CHECK(r2.attempted == 0);
  CHECK(fake.writeCount() == 5);
}

TEST_CASE("apply: a failed service op skips only its own dests; others go on; report names it") {
  FakeIpvsClient fake;
  fake.setSchedulers({"rr"});
  Table desired;
  put(desired, svc("10.96.0.1", 80), spec("rr"), {{dst("10.244.0.1", 8080), 1}});
  put(desired, svc("10.96.0.2", 80), spec("nosuch"), {{dst("10.244.0.2", 8080), 1}});
  put(desired, svc("10.96.0.3", 80), spec("rr"), {{dst("10.244.0.3", 8080), 1}});
  ApplyReport r = apply(plan(desired, Table{}, Ownership{}), fake);
  REQUIRE(r.failures.size() == 1);
  CHECK(r.failures[0].status.errnum() == ENOENT);
  CHECK(r.failures[0].op.toString() == "add-service TCP 10.96.0.2:80 scheduler nosuch");
  CHECK(r.skippedDests == std::map<ServiceKey, size_t>{{svc("10.96.0.2", 80), 1}});
  CHECK(fake.writeCount() == 5);  // 3 service adds + 2 dest adds; the blocked dest never sent
  auto t = *fake.dumpTable();
  CHECK(t.services.size() == 2);
  CHECK(t.services.at(svc("10.96.0.3", 80)).dests.size() == 1);
}

TEST_CASE("apply: converge rules fold a stale view (EEXIST -> update, ENOENT -> add, delete of missing is done)") {
  FakeIpvsClient fake;
  auto k = svc("10.96.0.1", 80);
  REQUIRE(fake.addService(k, spec("lc")).isOk());
  REQUIRE(fake.addDest(k, dst("10.244.0.1", 80), w(1)).isOk());
  // A plan computed from an older view: it thinks the table is empty-ish.
  Plan p;
  ServicePlan sp;
  sp.key = k;
  sp.action = ServicePlan::Action::kCreate;
  sp.ops = {Op::addService(k, spec("rr")), Op::addDest(k, dst("10.244.0.1", 80), w(5)),
            Op::updateDest(k, dst("10.244.0.2", 80), w(2)), Op::deleteDest(k, dst("10.244.0.7", 80))};
  p.services.push_back(sp);
  ServicePlan del;
  del.key = svc("10.96.0.99", 80);
  del.action = ServicePlan::Action::kDelete;
  del.ops = {Op::deleteService(del.key)};
  p.services.push_back(del);
  ApplyReport r = apply(p, fake);
  CHECK_MESSAGE(r.ok(), (r.failures.empty() ? "" : r.failures[0].status.toString()));
  auto s = *fake.dumpService(k);
  REQUIRE(s.has_value());
  CHECK(s->spec.scheduler == "rr");
  CHECK(s->dests.at(dst("10.244.0.1", 80)).spec.weight == 5);
  CHECK(s->dests.at(dst("10.244.0.2", 80)).spec.weight == 2);
}

TEST_CASE("apply: ESRCH on a dest op marks the service stale for a re-dump") {
  FakeIpvsClient fake;
  auto k = svc("10.96.0.1", 80);
  REQUIRE(fake.addService(k, spec()).isOk());
  Plan p;
  ServicePlan sp;
  sp.key = k;
  sp.ops = {Op::addDest(k, dst("10.244.0.1", 80), w(1))};
  p.services.push_back(sp);
  fake.failNext(k, ESRCH);
  ApplyReport r = apply(p, fake);
  CHECK(r.stale == std::set<ServiceKey>{k});
  CHECK_FALSE(r.ok());
}

// Read from the kernel as it holds them (ipvs::normalizeRead): found by test/fuzz/plan_fuzz.cc.
TEST_CASE("plan: a route real server the kernel holds on another port than the service's is deleted by that port") {
  FakeIpvsClient kernel;
  const auto k = svc("10.96.0.1", 80);
  REQUIRE(kernel.addService(k, spec()).isOk());
  DestSpec dr = w(1);
  dr.fwd = FwdMethod::kRoute;
  // Over netlink (keepalived, a script): the kernel keeps the port it is given; only ipvsadm rewrites it.
  REQUIRE(kernel.addDest(k, dst("10.244.0.5", 8080), dr).isOk());
  Table desired;
  desired.services[k].spec = spec();  // the real server has left
  const Ownership own = ownAll({"10.96.0.1"});
  Plan p = plan(desired, *kernel.dumpTable(), own);
  CHECK(opStrings(p) == std::vector<std::string>{"delete-dest TCP 10.96.0.1:80 -> 10.244.0.5:8080"});
  CHECK(apply(p, kernel).ok());
  CHECK(kernel.dumpTable()->services.at(k).dests.empty());
  CHECK(plan(desired, *kernel.dumpTable(), own).empty());
}

TEST_CASE("plan: an IPv4 persistence netmask of 0 (a /0) read from the kernel is set back to the desired /32") {
  FakeIpvsClient kernel;
  const auto k = svc("10.96.0.1", 80);
  ServiceSpec want = spec();
  want.flags = kSvcFlagPersistent;
  want.timeout = 10800;
  ServiceSpec byHand = want;
  byHand.netmask = 0;  // ipvsadm -E -t 10.96.0.1:80 -p 10800 -M 0.0.0.0: every client on one real server
  REQUIRE(kernel.addService(k, byHand).isOk());
  CHECK(kernel.dumpTable()->services.at(k).spec.netmask == 0);
  Table desired;
  desired.services[k].spec = want;
  Plan p = plan(desired, *kernel.dumpTable(), ownAll({"10.96.0.1"}));
  CHECK(opStrings(p) == std::vector<std::string>{"update-service TCP 10.96.0.1:80 scheduler rr persistent 10800s"});
}
