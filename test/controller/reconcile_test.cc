// The whole one-shot pass against the fake kernel and fake host.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <sstream>

#include <rapidjson/document.h>

#include "controller/fake_host.h"
#include "test/controller/cluster_dump.h"
#include "controller/k8s.h"
#include "controller/reconcile.h"
#include "controller/render.h"
#include "ipvs/fake_client.h"

using namespace kipvs;
using namespace kipvs::controller;
using namespace kipvs::ipvs;

namespace {

Address A(const char* s) { return *Address::parse(s); }

std::string service(const std::string& name, const std::string& ip, const std::string& extra = "") {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":")" + name +
         R"("},"spec":{"type":"ClusterIP","clusterIP":")" + ip + R"(","ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}])" +
         extra + "}}";
}

std::string slice(const std::string& svc, const std::vector<std::pair<std::string, std::string>>& eps) {
  std::string e;
  for (const auto& [ip, cond] : eps) {
    if (!e.empty()) e += ",";
    e += R"({"addresses":[")" + ip + R"("],"conditions":)" + cond + R"(,"nodeName":"node-a"})";
  }
  return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"namespace":"default","name":")" +
         svc + R"(-abc","labels":{"kubernetes.io/service-name":")" + svc +
         R"("}},"addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[)" + e + "]}";
}

const char* kReady = R"({"ready":true,"serving":true,"terminating":false})";
const char* kTerminating = R"({"ready":false,"serving":true,"terminating":true})";

Cluster cluster(const std::vector<std::string>& items) {
  std::string doc = R"({"apiVersion":"v1","kind":"List","items":[)";
  for (size_t i = 0; i < items.size(); ++i) doc += (i ? "," : "") + items[i];
  doc += "]}";
  auto c = parseJson(doc, "test.json");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  return *c;
}

struct Rig {
  FakeIpvsClient kernel;
  FakeHostNetwork host;
  ReconcileOptions opts;
  std::ostringstream out, err;
  int sleeps = 0;
  std::function<void()> onSleep;

  Rig() {
    host.seedIpvsSysctlDefaults();
    opts.node.nodeName = "node-a";
    opts.node.nodeIps = {A("192.168.1.10")};
    opts.nodeIpsFromHost = false;
  }
  ReconcileResult run(const Cluster& c, const TableSource& firstRead = nullptr, const TableReady& ready = nullptr) {
    out.str("");
    err.str("");
    return reconcile(
        c, opts, kernel, host, out, err,
        [this](std::chrono::milliseconds) {
          ++sleeps;
          if (onSleep) onSleep();
        },
        firstRead, ready);
  }
};

}  // namespace

TEST_CASE("reconcile: programs the table, binds VIPs, and a second run writes nothing") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"),
                       slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}, {"10.244.0.3", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 0);
  auto t = *rig.kernel.dumpTable();
  REQUIRE(t.services.size() == 1);
  const auto& s = t.services.at(ServiceKey::tcp(A("10.96.0.10"), 80));
  CHECK(s.spec.scheduler == "rr");
  CHECK(s.dests.size() == 3);
  // The default --vip-mode=route: a local route, no address.
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.host.addresses("kipvs0").empty());
  CHECK(rig.host.sysctls().at("net/ipv4/vs/conntrack") == "1");
  CHECK(rig.out.str().find("+ service TCP 10.96.0.10:80") != std::string::npos);

  uint64_t kernelWrites = rig.kernel.writeCount();
  uint64_t hostWrites = rig.host.writeCount();
  ReconcileResult again = rig.run(c);
  CHECK(again.exitCode() == 0);
  CHECK(again.plan.empty());
  CHECK(rig.kernel.writeCount() == kernelWrites);
  CHECK(rig.host.writeCount() == hostWrites);
  CHECK(rig.out.str().find("0 kernel writes") != std::string::npos);
}

TEST_CASE("reconcile: dry run prints the plan and changes nothing") {
  Rig rig;
  rig.opts.dryRun = true;
  Cluster c = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(r.plan.opCount() == 2);
  CHECK(rig.kernel.writeCount() == 0);
  CHECK(rig.host.writeCount() == 0);
  CHECK(rig.out.str().find("dry run: nothing was changed") != std::string::npos);
  CHECK(rig.out.str().find("+ local route 10.96.0.10 dev kipvs0") != std::string::npos);
}

TEST_CASE("reconcile: a foreign virtual server is left alone; a stale one of ours goes with its VIP") {
  Rig rig;
  auto foreign = ServiceKey::tcp(A("172.16.5.5"), 80);
  REQUIRE(rig.kernel.addService(foreign, ServiceSpec{"wlc", 0, 0, 0xffffffff, ""}).isOk());
  Cluster before = cluster({service("web", "10.96.0.10"), service("old", "10.96.0.20"),
                            slice("web", {{"10.244.0.1", kReady}}), slice("old", {{"10.244.0.9", kReady}})});
  REQUIRE(rig.run(before).exitCode() == 0);
  CHECK(rig.host.routes("kipvs0").size() == 2);

  Cluster after = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(after);
  CHECK(r.exitCode() == 0);
  auto t = *rig.kernel.dumpTable();
  CHECK(t.services.count(foreign) == 1);
  CHECK(t.services.count(ServiceKey::tcp(A("10.96.0.20"), 80)) == 0);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.out.str().find("left alone TCP 172.16.5.5:80") != std::string::npos);
  CHECK(rig.out.str().find("deleted local route 10.96.0.20 dev kipvs0") != std::string::npos);
}

TEST_CASE("reconcile: an input with no Service, or no EndpointSlice, that would empty what we own is refused") {
  Rig rig;
  auto foreign = ServiceKey::tcp(A("172.16.5.5"), 80);
  REQUIRE(rig.kernel.addService(foreign, ServiceSpec{"wlc", 0, 0, 0xffffffff, ""}).isOk());
  Cluster full = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                          slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}}),
                          slice("api", {{"10.244.0.9", kReady}})});
  REQUIRE(rig.run(full).exitCode() == 0);
  auto table = [&] {
    std::ostringstream t;
    renderIpvsadmRules(*rig.kernel.dumpTable(), t);
    return t.str();
  };
  const std::string before = table();
  const uint64_t writes = rig.kernel.writeCount();
  const uint64_t hostWrites = rig.host.writeCount();

  // No Service at all (an empty List): refused, nothing written.
  ReconcileResult none = rig.run(cluster({}));
  CHECK(none.exitCode() == 2);
  CHECK(none.fatal.message().find("the input has no valid Service: it would delete all 2 virtual servers") !=
        std::string::npos);
  CHECK(rig.err.str().find("--allow-empty") != std::string::npos);
  // Services but no EndpointSlice (a dump that could not list them): refused too.
  ReconcileResult noSlices = rig.run(cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20")}));
  CHECK(noSlices.exitCode() == 2);
  CHECK(noSlices.fatal.message().find("no valid EndpointSlice: it would remove all 3 real servers of the 2") !=
        std::string::npos);
  CHECK(rig.kernel.writeCount() == writes);
  CHECK(rig.host.writeCount() == hostWrites);
  CHECK(table() == before);
  // Services that are there but do not parse: nothing would go (what is not
  // wanted is kept while a Service is unknown), so no refusal: the errors,
  // exit 1, the table as it was.
  auto stringPort = [](std::string svc) { return svc.replace(svc.find(R"("port":80)"), 9, R"("port":"80")"); };
  ReconcileResult unread = rig.run(cluster({stringPort(service("web", "10.96.0.10")),
                                            stringPort(service("api", "10.96.0.20")),
                                            slice("web", {{"10.244.0.1", kReady}})}));
  CHECK(unread.exitCode() == 1);
  CHECK(unread.fatal.isOk());
  CHECK_MESSAGE(rig.err.str().find("error: Service default/api") != std::string::npos, rig.err.str());
  CHECK(unread.objectErrors.size() == 2);
  CHECK(unread.plan.kept.size() == 2);
  CHECK(rig.kernel.writeCount() == writes);
  CHECK(table() == before);

  // With -o json, the refusal is one object on out all the same.
  rig.opts.output = OutputFormat::kJson;
  ReconcileResult json = rig.run(cluster({}));
  rig.opts.output = OutputFormat::kText;
  CHECK(json.exitCode() == 2);
  rapidjson::Document doc;
  // rapidjson's SSE2 scan reads up to 15 bytes past the NUL (ASan would say so): padded.
  const std::string text = rig.out.str() + std::string(16, '\0');
  doc.Parse(text.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc["exitCode"].GetInt() == 2);
  CHECK_FALSE(doc["dryRun"].GetBool());
  CHECK(std::string(doc["fatal"]["message"].GetString()).find("the input has no valid Service") != std::string::npos);
  CHECK(rig.kernel.writeCount() == writes);

  // A dry run plans it, and warns.
  rig.opts.dryRun = true;
  ReconcileResult dry = rig.run(cluster({}));
  CHECK(dry.exitCode() == 0);
  CHECK(dry.plannedWrites == 2);
  CHECK(rig.err.str().find("warning: a run without --dry-run would refuse this input: the input has no valid Service") !=
        std::string::npos);
  rig.opts.dryRun = false;

  // One Service and one slice left is no empty input: applied as it is.
  ReconcileResult some = rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})}));
  CHECK(some.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.size() == 2);  // web and the foreign one

  // --allow-empty: applied; the foreign virtual server stays.
  rig.opts.allowEmpty = true;
  ReconcileResult emptied = rig.run(cluster({service("web", "10.96.0.10")}));
  CHECK(emptied.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.at(ServiceKey::tcp(A("10.96.0.10"), 80)).dests.empty());
  CHECK(rig.run(cluster({})).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.size() == 1);
  CHECK(rig.kernel.dumpTable()->services.count(foreign) == 1);

  // Nothing of ours in the table: an empty input changes nothing and is no error.
  rig.opts.allowEmpty = false;
  ReconcileResult idle = rig.run(cluster({}));
  CHECK(idle.exitCode() == 0);
  CHECK(idle.plan.empty());
}

TEST_CASE("reconcile: the first read of the table comes from the caller's source, once; a transient failure reads again") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  REQUIRE(rig.run(c).exitCode() == 0);
  const Table converged = *rig.kernel.dumpTable();
  const uint64_t writes = rig.kernel.writeCount();

  // The source's table is what the plan is made against: it says converged.
  int calls = 0;
  ReconcileResult r = rig.run(c, [&] {
    ++calls;
    return StatusOr<Table>(converged);
  });
  CHECK(calls == 1);
  CHECK(r.plan.empty());
  CHECK(rig.kernel.writeCount() == writes);

  // A lost answer from the source: the pass reads the kernel itself.
  calls = 0;
  r = rig.run(c, [&] {
    ++calls;
    return StatusOr<Table>(Status::kernel(ENOBUFS, "injected"));
  });
  CHECK(calls == 1);
  CHECK(r.exitCode() == 0);
  CHECK(r.plan.empty());
}

TEST_CASE("reconcile: route mode leaves a VIP that is a node address alone, and a second run changes nothing") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));  // the node's address, also a Service's externalIP
  Cluster c = cluster({service("web", "10.96.0.10", R"(,"externalIPs":["192.168.1.10"])"),
                       slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.kernel.dumpTable()->services.count(ServiceKey::tcp(A("192.168.1.10"), 80)) == 1);
  CHECK(rig.out.str().find("192.168.1.10 dev kipvs0") == std::string::npos);
  const uint64_t hostWrites = rig.host.writeCount();
  const int routeCalls = rig.host.calls(FakeHostNetwork::Op::kAddRoute);
  ReconcileResult again = rig.run(c);
  CHECK(again.exitCode() == 0);
  CHECK(again.kernelWrites == 0);
  CHECK(again.hostChanges.empty());
  CHECK(rig.host.writeCount() == hostWrites);
  CHECK(rig.host.calls(FakeHostNetwork::Op::kAddRoute) == routeCalls);
}

TEST_CASE("reconcile: an externalIP naming the node does not make the node address's other virtual servers ours") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  // keepalived's, or one made by hand: on the node address, outside the NodePort range.
  const auto ssh = ServiceKey::tcp(A("192.168.1.10"), 22);
  ServiceSpec wlc;
  wlc.scheduler = "wlc";
  wlc.netmask = 0xffffffff;
  REQUIRE(rig.kernel.addService(ssh, wlc).isOk());
  Cluster c = cluster({service("web", "10.96.0.10", R"(,"externalIPs":["192.168.1.10"])"),
                       slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  INFO(rig.out.str());
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(ssh) == 1);
  CHECK(rig.kernel.dumpTable()->services.count(ServiceKey::tcp(A("192.168.1.10"), 80)) == 1);
  CHECK(rig.out.str().find("left alone TCP 192.168.1.10:22") != std::string::npos);
}

// The owned record's tests: "web" with the node's address 192.168.1.10 as
// its externalIP (port 80, or another), and "other", so that an input
// without "web" still has Services and slices.
Cluster withWebOnNodeIp(uint16_t port = 80) {
  std::string web = service("web", "10.96.0.10", R"(,"externalIPs":["192.168.1.10"])");
  web.replace(web.find(R"("port":80)"), 9, R"("port":)" + std::to_string(port));
  return cluster({web, slice("web", {{"10.244.0.1", kReady}}), service("other", "10.96.0.20"),
                  slice("other", {{"10.244.0.9", kReady}})});
}
Cluster otherOnly() { return cluster({service("other", "10.96.0.20"), slice("other", {{"10.244.0.9", kReady}})}); }

TEST_CASE("reconcile: a virtual server made on an externalIP naming the node is recorded, and deleted once unwanted") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto ssh = ServiceKey::tcp(A("192.168.1.10"), 22);
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  ServiceSpec wlc;
  wlc.scheduler = "wlc";
  wlc.netmask = 0xffffffff;
  REQUIRE(rig.kernel.addService(ssh, wlc).isOk());
  Cluster withIp = withWebOnNodeIp();
  ReconcileResult r = rig.run(withIp);
  INFO(rig.out.str());
  REQUIRE(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});  // the foreign :22 is not in it
  CHECK(rig.out.str().find("host: recorded TCP 192.168.1.10:80 as kipvs's") != std::string::npos);

  // A second run stores nothing and writes nothing.
  const uint64_t hostWrites = rig.host.writeCount();
  r = rig.run(withIp);
  CHECK(r.exitCode() == 0);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.host.writeCount() == hostWrites);
  CHECK(rig.host.calls(FakeHostNetwork::Op::kStoreOwnedRecord) == 1);

  // A dry run without the externalIP plans the delete and stores nothing.
  Cluster without = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}}), service("other", "10.96.0.20"),
                             slice("other", {{"10.244.0.9", kReady}})});
  rig.opts.dryRun = true;
  r = rig.run(without);
  CHECK(r.exitCode() == 0);
  CHECK(rig.out.str().find("- service TCP 192.168.1.10:80") != std::string::npos);
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);

  // The externalIP goes: so does its virtual server, and the record empties.
  // The foreign one on the same address stays.
  rig.opts.dryRun = false;
  r = rig.run(without);
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);
  CHECK(rig.kernel.dumpTable()->services.count(ssh) == 1);
  CHECK(rig.out.str().find("left alone TCP 192.168.1.10:22") != std::string::npos);
  CHECK(rig.host.record().empty());
  CHECK(rig.out.str().find("host: unrecorded TCP 192.168.1.10:80") != std::string::npos);
}

TEST_CASE("reconcile: a NodePort virtual server is recorded, and deleted once its address is no node address") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  rig.host.addLinkAddress("eth0", A("192.168.1.11"));
  const std::string nodePort = R"("targetPort":8080,"nodePort":30080})";
  std::string web = service("web", "10.96.0.10");
  web.replace(web.find(R"("targetPort":8080})"), 18, nodePort);
  web.replace(web.find(R"("type":"ClusterIP")"), 18, R"("type":"NodePort")");
  Cluster c = cluster({web, slice("web", {{"10.244.0.1", kReady}})});
  const auto onTen = ServiceKey::tcp(A("192.168.1.10"), 30080), onEleven = ServiceKey::tcp(A("192.168.1.11"), 30080);
  // Someone else's, in the NodePort range, on the address the node gives up.
  const auto foreign = ServiceKey::tcp(A("192.168.1.10"), 30081);
  ServiceSpec rr;
  rr.scheduler = "rr";
  rr.netmask = 0xffffffff;

  ReconcileResult r = rig.run(c);
  INFO(rig.out.str());
  REQUIRE(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(onTen) == 1);
  CHECK(rig.host.record() == std::set<ServiceKey>{onTen});
  CHECK(rig.out.str().find("host: recorded TCP 192.168.1.10:30080 as kipvs's") != std::string::npos);
  REQUIRE(rig.kernel.addService(foreign, rr).isOk());

  // The node's address is now .11: the NodePort moves there, and the one on
  // .10, no longer marked by a node address, is still kipvs's by the record.
  rig.opts.node.nodeIps = {A("192.168.1.11")};
  r = rig.run(c);
  CHECK(r.exitCode() == 0);
  auto table = rig.kernel.dumpTable();
  CHECK(table->services.count(onTen) == 0);
  CHECK(table->services.count(onEleven) == 1);
  CHECK(rig.host.record() == std::set<ServiceKey>{onEleven});
  CHECK(rig.out.str().find("host: unrecorded TCP 192.168.1.10:30080") != std::string::npos);
  // The record owns what kipvs made there, not the address: the foreign one stays.
  CHECK(table->services.count(foreign) == 1);
  CHECK(rig.out.str().find("left alone TCP 192.168.1.10:30081") != std::string::npos);

  // Converged: nothing more to write or store.
  const uint64_t storesBefore = rig.host.calls(FakeHostNetwork::Op::kStoreOwnedRecord);
  r = rig.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.host.calls(FakeHostNetwork::Op::kStoreOwnedRecord) == storesBefore);
}

TEST_CASE("reconcile: in address mode an externalIP naming the node is bound to the dummy, owned, and not recorded") {
  Rig rig;
  rig.opts.vipMode = VipMode::kAddress;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);
  CHECK(rig.host.addresses("kipvs0").count(A("192.168.1.10")) == 1);
  CHECK(rig.host.record().empty());
  CHECK(rig.host.calls(FakeHostNetwork::Op::kStoreOwnedRecord) == 0);
  REQUIRE(rig.run(otherOnly()).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);
}

TEST_CASE("reconcile: a recorded virtual server whose delete fails stays recorded, and goes on the next run") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  REQUIRE(rig.host.record() == std::set<ServiceKey>{web80});
  Cluster without = otherOnly();
  rig.kernel.failNext(web80, EPERM);
  ReconcileResult r = rig.run(without);
  CHECK(r.exitCode() == 1);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});
  r = rig.run(without);
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);
  CHECK(rig.host.record().empty());
}

TEST_CASE("reconcile: after switching from address to route mode, a virtual server on a node address is recorded") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  rig.opts.vipMode = VipMode::kAddress;
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  REQUIRE(rig.host.addresses("kipvs0").count(A("192.168.1.10")) == 1);
  REQUIRE(rig.host.record().empty());
  // Route mode takes the node address off kipvs0 and gives it no route:
  // nothing in the kernel marks web80 as kipvs's any more, so the record must.
  rig.opts.vipMode = VipMode::kRoute;
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  CHECK(rig.host.addresses("kipvs0").count(A("192.168.1.10")) == 0);
  CHECK(rig.host.routes("kipvs0").count(A("192.168.1.10")) == 0);
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});
  REQUIRE(rig.run(otherOnly()).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);
  CHECK(rig.host.record().empty());
}

TEST_CASE("reconcile: a VIP local on this host already, though no node address (on lo), gets no route and is recorded") {
  Rig rig;  // node IPs given: 192.168.1.10 only
  rig.host.addLink("lo", "loopback");
  rig.host.addLinkAddress("lo", A("10.77.0.1"));  // an anycast VIP a BGP speaker put on lo
  const auto anycast = ServiceKey::tcp(A("10.77.0.1"), 80);
  const Cluster with = cluster({service("web", "10.96.0.10", R"(,"externalIPs":["10.77.0.1"])"),
                                slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(with);
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(anycast) == 1);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.host.record() == std::set<ServiceKey>{anycast});
  const uint64_t hostWrites = rig.host.writeCount();
  r = rig.run(with);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.host.writeCount() == hostWrites);
  CHECK(r.hostChanges.empty());
  // The externalIP goes: kipvs made that virtual server, so it goes too.
  r = rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})}));
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(anycast) == 0);
  CHECK(rig.host.record().empty());
}

TEST_CASE("reconcile: a stale virtual server whose delete fails keeps its VIP, and goes on the next run") {
  Rig rig;
  const auto old80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  const Cluster web = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);  // "other" on 10.96.0.20
  REQUIRE(rig.host.routes("kipvs0").count(A("10.96.0.20")) == 1);
  rig.kernel.failNext(old80, EPERM);
  CHECK(rig.run(web).exitCode() == 1);
  REQUIRE(rig.kernel.dumpTable()->services.count(old80) == 1);
  CHECK(rig.host.routes("kipvs0").count(A("10.96.0.20")) == 1);  // still ours
  CHECK(rig.run(web).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(old80) == 0);
  CHECK(rig.host.routes("kipvs0").count(A("10.96.0.20")) == 0);
}

TEST_CASE("reconcile: a virtual server someone else removed or made after the read is read again and completed") {
  const auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
  const Cluster two = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}})});
  const Cluster twoSticky = cluster({service("web", "10.96.0.10", R"(,"sessionAffinity":"ClientIP")"),
                                     slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}})});
  auto dests = [](Rig& rig, const ServiceKey& k) {
    std::set<std::string> out;
    const Table t = *rig.kernel.dumpTable();
    for (const auto& [d, st] : t.services.at(k).dests) out.insert(d.address.toString());
    return out;
  };
  const std::set<std::string> both{"10.244.0.1", "10.244.0.2"};

  SUBCASE("removed: the update meets ESRCH; added again with all its real servers") {
    Rig rig;
    REQUIRE(rig.run(two).exitCode() == 0);
    const Table read = *rig.kernel.dumpTable();
    REQUIRE(rig.kernel.deleteService(web).isOk());  // ipvsadm -D, after our read
    ReconcileResult r = rig.run(twoSticky, [&]() -> StatusOr<Table> { return read; });
    INFO(rig.err.str());
    CHECK(r.exitCode() == 0);
    CHECK(dests(rig, web) == both);
    CHECK((rig.kernel.dumpTable()->services.at(web).spec.flags & kSvcFlagPersistent) != 0);
  }
  SUBCASE("made: the add meets EEXIST; its real servers not wanted go") {
    Rig rig;
    ServiceSpec rr;
    rr.scheduler = "rr";
    rr.netmask = 0xffffffff;
    REQUIRE(rig.kernel.addService(web, rr).isOk());  // before the writes, after an empty read
    REQUIRE(rig.kernel.addDest(web, DestKey{A("10.244.9.9"), 8080}, DestSpec{}).isOk());
    // Made local as kipvs would, so that the virtual server is owned.
    ReconcileResult r = rig.run(two, [&]() -> StatusOr<Table> { return Table{}; });
    INFO(rig.err.str());
    CHECK(r.exitCode() == 0);
    CHECK(dests(rig, web) == both);
  }
}

TEST_CASE("reconcile: a departing real server already removed by someone else is not added back") {
  Rig rig;
  const auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
  const DestKey gone{A("10.244.0.2"), 8080};
  REQUIRE(rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}})}))
              .exitCode() == 0);
  Table read = *rig.kernel.dumpTable();
  read.services.at(web).dests.at(gone).counters.activeConns = 3;  // so it would drain
  REQUIRE(rig.kernel.deleteDest(web, gone).isOk());               // ipvsadm -d, after our read
  ReconcileResult r = rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})}),
                              [&]() -> StatusOr<Table> { return read; });
  INFO(rig.err.str());
  CHECK(r.exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.at(web).dests.count(gone) == 0);
}

TEST_CASE("reconcile: a record that cannot be read owns nothing and is not overwritten; one that cannot be stored is an error") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  const auto web81 = ServiceKey::tcp(A("192.168.1.10"), 81);
  REQUIRE(rig.kernel.addService(web80, ServiceSpec{}).isOk());
  rig.host.seedRecord({web80});
  rig.host.injectFailure(FakeHostNetwork::Op::kOwnedRecord, Status::error(Code::kParse, "line 2: bad"));
  ReconcileResult r = rig.run(otherOnly());
  CHECK(r.exitCode() == 1);
  CHECK(rig.err.str().find("reading the record of owned virtual servers: line 2: bad") != std::string::npos);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);  // not known to be ours this run
  CHECK(rig.host.calls(FakeHostNetwork::Op::kStoreOwnedRecord) == 0);
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});

  // Storing fails: the Service is still programmed, and the error says so.
  rig.host.injectFailure(FakeHostNetwork::Op::kStoreOwnedRecord, Status::error(Code::kIo, "cannot create /run/kipvs", EROFS), 2);
  Cluster want81 = withWebOnNodeIp(81);
  r = rig.run(want81);
  CHECK(r.exitCode() == 1);
  CHECK(rig.kernel.dumpTable()->services.count(web81) == 1);
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);  // the record was read this time
  CHECK(rig.err.str().find("recording owned virtual servers: cannot create /run/kipvs") != std::string::npos);
  // Once the store works again, the next run records it.
  r = rig.run(want81);
  CHECK(r.exitCode() == 0);
  CHECK(rig.host.record() == std::set<ServiceKey>{web81});
}

TEST_CASE("reconcile: --vip-mode=address binds VIPs as addresses, and a second run writes nothing") {
  Rig rig;
  rig.opts.vipMode = VipMode::kAddress;
  Cluster c = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(rig.host.addresses("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.host.routes("kipvs0").empty());
  CHECK(rig.out.str().find("+ bind 10.96.0.10 to kipvs0") != std::string::npos);
  CHECK(rig.out.str().find("host: bound 10.96.0.10 to kipvs0") != std::string::npos);
  const uint64_t hostWrites = rig.host.writeCount();
  ReconcileResult again = rig.run(c);
  CHECK(again.exitCode() == 0);
  CHECK(again.kernelWrites == 0);
  CHECK(rig.host.writeCount() == hostWrites);
}

TEST_CASE("reconcile: -o json lists the VIPs to bind, unbind and convert, in order") {
  Rig rig;
  rig.opts.output = OutputFormat::kJson;
  rig.opts.vipMode = VipMode::kAddress;
  Cluster both = cluster({service("web", "10.96.0.10"), service("old", "10.96.0.20"),
                          slice("web", {{"10.244.0.1", kReady}}), slice("old", {{"10.244.0.9", kReady}})});
  REQUIRE(rig.run(both).exitCode() == 0);
  CHECK(rig.out.str().find(R"(,"vipMode":"address","bind":["10.96.0.10","10.96.0.20"],"unbind":[],"convert":[],)") !=
        std::string::npos);
  rig.opts.vipMode = VipMode::kRoute;
  REQUIRE(rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})})).exitCode() == 0);
  CHECK(rig.out.str().find(R"(,"vipMode":"route","bind":["10.96.0.10"],"unbind":["10.96.0.20"],"convert":["10.96.0.10"],)") !=
        std::string::npos);
  // A dry run renders the same lists (nothing ahead of the writes there).
  rig.opts.dryRun = true;
  rig.opts.vipMode = VipMode::kAddress;
  rig.run(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})}));
  CHECK(rig.out.str().find(R"(,"vipMode":"address","bind":["10.96.0.10"],"unbind":[],"convert":["10.96.0.10"],)") !=
        std::string::npos);
}

TEST_CASE("reconcile: switching --vip-mode converts the VIPs still wanted and removes the rest of the other form") {
  Rig rig;
  rig.opts.vipMode = VipMode::kAddress;
  Cluster both = cluster({service("web", "10.96.0.10"), service("old", "10.96.0.20"),
                          slice("web", {{"10.244.0.1", kReady}}), slice("old", {{"10.244.0.9", kReady}})});
  REQUIRE(rig.run(both).exitCode() == 0);
  REQUIRE(rig.host.addresses("kipvs0") == std::set<Address>{A("10.96.0.10"), A("10.96.0.20")});

  // Route mode: 10.96.0.10 moves to a route; 10.96.0.20 (Service gone) is
  // still ours, so its virtual server goes and its address with it.
  rig.opts.vipMode = VipMode::kRoute;
  Cluster web = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(web);
  CHECK(r.exitCode() == 0);
  CHECK(r.kernelWrites == 1);  // old's delete only: web's virtual server is kept as it is
  CHECK(rig.host.addresses("kipvs0").empty());
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.kernel.dumpTable()->services.count(ServiceKey::tcp(A("10.96.0.20"), 80)) == 0);
  CHECK(rig.out.str().find("- unbind 10.96.0.10 from kipvs0 (left by --vip-mode=address)") != std::string::npos);
  CHECK(rig.out.str().find("+ local route 10.96.0.10 dev kipvs0") != std::string::npos);
  CHECK(rig.out.str().find("- unbind 10.96.0.20 from kipvs0") != std::string::npos);

  // And back.
  rig.opts.vipMode = VipMode::kAddress;
  r = rig.run(web);
  CHECK(r.exitCode() == 0);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.host.addresses("kipvs0") == std::set<Address>{A("10.96.0.10")});
  CHECK(rig.host.routes("kipvs0").empty());
}

TEST_CASE("reconcile: a VIP that cannot be made local is an error; the IPVS table is still programmed") {
  Rig rig;
  rig.host.injectFailure(FakeHostNetwork::Op::kAddRoute, Status::kernel(ENOBUFS, "injected"), 1, "10.96.0.10");
  Cluster c = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.11"),
                       slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 1);
  REQUIRE(r.hostErrors.size() == 1);
  CHECK(r.hostErrors[0].toString().find("add local route 10.96.0.10 dev kipvs0") != std::string::npos);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.11")});
  CHECK(rig.kernel.dumpTable()->services.size() == 2);
  // The next run finishes the job.
  CHECK(rig.run(c).exitCode() == 0);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10"), A("10.96.0.11")});
}

TEST_CASE("reconcile: a VIP with someone else's route in table local: local is fine, a blackhole is an error every run") {
  Rig rig;
  rig.host.addForeignRoute(A("10.96.0.10"), "local");      // e.g. `ip route add local ... proto static`
  rig.host.addForeignRoute(A("10.96.0.11"), "blackhole");  // IPVS would never see the packets
  Cluster c = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.11"), service("db", "10.96.0.12"),
                       slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}}),
                       slice("db", {{"10.244.0.3", kReady}})});
  for (int run = 1; run <= 2; ++run) {
    CAPTURE(run);
    ReconcileResult r = rig.run(c);
    CHECK(r.exitCode() == 1);
    REQUIRE(r.hostErrors.size() == 1);
    const std::string e = r.hostErrors[0].toString();
    CHECK_MESSAGE(e.find("add local route 10.96.0.11 dev kipvs0") != std::string::npos, e);
    CHECK_MESSAGE(e.find("blackhole") != std::string::npos, e);
    CHECK(r.hostErrors[0].errnum() == EEXIST);
    // Not reported as made: "added local route 10.96.0.11" would be false.
    for (const auto& h : r.hostChanges) CHECK_MESSAGE(h.find("10.96.0.11") == std::string::npos, h);
    CHECK(rig.kernel.dumpTable()->services.size() == 3);  // the IPVS table is programmed all the same
    CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.12")});
    if (run == 2) CHECK(r.kernelWrites == 0);
  }
}

TEST_CASE("reconcile: a terminating pod drains at weight 0, then goes (drain=wait)") {
  Rig rig;
  Cluster c1 = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}})});
  REQUIRE(rig.run(c1).exitCode() == 0);
  auto k = ServiceKey::tcp(A("10.96.0.10"), 80);
  DestKey leaving{A("10.244.0.2"), 8080};
  DestCounters busy;
  busy.activeConns = 3;
  REQUIRE(rig.kernel.setCounters(k, leaving, busy).isOk());

  Cluster c2 =
      cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kTerminating}})});
  SUBCASE("skip: left at weight 0") {
    ReconcileResult r = rig.run(c2);
    CHECK(r.exitCode() == 0);
    CHECK(r.stillDraining == 1);
    CHECK(rig.kernel.dumpTable()->services.at(k).dests.at(leaving).spec.weight == 0);
    CHECK(rig.out.str().find("draining at weight 0: 3 active") != std::string::npos);
  }
  SUBCASE("wait: removed once the connections end") {
    rig.opts.drain = DrainMode::kWait;
    rig.onSleep = [&] {
      if (rig.sleeps == 3) (void)rig.kernel.setCounters(k, leaving, DestCounters{});
    };
    ReconcileResult r = rig.run(c2);
    CHECK(r.exitCode() == 0);
    CHECK(r.stillDraining == 0);
    CHECK(rig.sleeps == 3);
    CHECK(rig.kernel.dumpTable()->services.at(k).dests.count(leaving) == 0);
    // The plan (rendered beside the writes) still comes first, then drain progress, then the summary.
    const std::string o = rig.out.str();
    const size_t planAt = o.find("draining at weight 0"), drainedAt = o.find("drained: removed"),
                 summaryAt = o.find("Applied ");
    REQUIRE(planAt != std::string::npos);
    REQUIRE(drainedAt != std::string::npos);
    REQUIRE(summaryAt != std::string::npos);
    CHECK(planAt < drainedAt);
    CHECK(drainedAt < summaryAt);
  }
  SUBCASE("wait: a quiesce refused on every poll is one failure, not one per poll") {
    rig.opts.drain = DrainMode::kWait;
    rig.opts.drainTimeout = 5 * rig.opts.drainPoll;
    for (int i = 0; i < 10; ++i) rig.kernel.failNext(k, EPERM);
    ReconcileResult r = rig.run(c2);
    CHECK(rig.sleeps == 5);
    CHECK(r.exitCode() == 1);
    CHECK(r.report.failures.size() == 1);
    CHECK(r.stillDraining == 1);
  }
}

TEST_CASE("reconcile: one bad Service is named and skipped; the others are applied") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"), service("broken", "10.96.0.300"),
                       service("sched", "10.96.0.30", R"(,"x":1)"), slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 1);
  CHECK(rig.err.str().find("default/broken") != std::string::npos);
  auto t = *rig.kernel.dumpTable();
  CHECK(t.services.count(ServiceKey::tcp(A("10.96.0.10"), 80)) == 1);
}

TEST_CASE("reconcile: a Service that turns invalid keeps what it has in the kernel, VIP included, until fixed") {
  Rig rig;
  auto api = [&](const std::string& annotation) {
    std::string s = service("api", "10.96.0.20");
    s.replace(s.find(R"("name":"api"})"), std::string(R"("name":"api"})").size(),
              R"("name":"api","annotations":{"kipvs.io/scheduler":")" + annotation + R"("}})");
    return s;
  };
  const std::string good = api("lc");
  Cluster c1 = cluster({service("web", "10.96.0.10"), good, slice("web", {{"10.244.0.1", kReady}}),
                        slice("api", {{"10.244.0.2", kReady}, {"10.244.0.3", kReady}})});
  REQUIRE(rig.run(c1).exitCode() == 0);
  const ipvs::Table before = *rig.kernel.dumpTable();
  const auto apiKey = ServiceKey::tcp(A("10.96.0.20"), 80);
  REQUIRE(before.services.count(apiKey) == 1);

  // A typo in the scheduler, and one endpoint fewer: the Service is invalid,
  // so nothing of it changes, not even its real servers.
  Cluster c2 = cluster({service("web", "10.96.0.10"), api("lcc"), slice("web", {{"10.244.0.1", kReady}}),
                        slice("api", {{"10.244.0.2", kReady}})});
  for (OutputFormat f : {OutputFormat::kText, OutputFormat::kJson}) {
    rig.opts.output = f;
    ReconcileResult r = rig.run(c2);
    CHECK(r.exitCode() == 1);
    CHECK(r.kernelWrites == 0);
    CHECK(rig.err.str().find("default/api") != std::string::npos);
    const ipvs::ServiceState now = rig.kernel.dumpTable()->services.at(apiKey);
    CHECK(now.spec == before.services.at(apiKey).spec);
    CHECK(now.dests.size() == 2);
    CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10"), A("10.96.0.20")});
    REQUIRE(r.plan.kept == std::vector<ServiceKey>{apiKey});
    if (f == OutputFormat::kText) {
      CHECK_MESSAGE(rig.out.str().find("kept TCP 10.96.0.20:80 as it is (its Service is invalid") != std::string::npos,
                    rig.out.str());
    } else {
      CHECK_MESSAGE(rig.out.str().find(R"("kept":["TCP 10.96.0.20:80"])") != std::string::npos, rig.out.str());
    }
  }
  rig.opts.output = OutputFormat::kText;

  // A Service that does not even parse: which virtual servers are its is
  // unknown, so nothing unwanted goes this run.
  std::string unparsable = good;
  unparsable.replace(unparsable.find(R"("port":80)"), 9, R"("port":"80")");
  Cluster broken = cluster({service("web", "10.96.0.10"), unparsable, slice("web", {{"10.244.0.1", kReady}}),
                            slice("api", {{"10.244.0.2", kReady}})});
  REQUIRE(broken.errors.size() == 1);
  ReconcileResult rb = rig.run(broken);
  CHECK(rb.exitCode() == 1);
  CHECK(rb.kernelWrites == 0);
  CHECK(rb.plan.kept == std::vector<ServiceKey>{apiKey});
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10"), A("10.96.0.20")});

  // Fixed: planned again (one real server goes); removed: deleted, VIP too.
  Cluster c3 = cluster({service("web", "10.96.0.10"), good, slice("web", {{"10.244.0.1", kReady}}),
                        slice("api", {{"10.244.0.2", kReady}})});
  CHECK(rig.run(c3).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.at(apiKey).dests.size() == 1);
  Cluster c4 = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  CHECK(rig.run(c4).exitCode() == 0);
  CHECK(rig.kernel.dumpTable()->services.count(apiKey) == 0);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
}

TEST_CASE("reconcile: an invalid NodePort Service keeps its NodePort virtual servers") {
  Rig rig;
  auto svc = [](const std::string& sched) {
    return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":"np","annotations":{"kipvs.io/scheduler":")" +
           sched +
           R"("}},"spec":{"type":"NodePort","clusterIP":"10.96.0.50","ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080,"nodePort":30080}]}})";
  };
  REQUIRE(rig.run(cluster({svc("rr"), slice("np", {{"10.244.0.2", kReady}})})).exitCode() == 0);
  const auto nodeKey = ServiceKey::tcp(A("192.168.1.10"), 30080);
  REQUIRE(rig.kernel.dumpTable()->services.count(nodeKey) == 1);
  ReconcileResult r = rig.run(cluster({svc("nope"), slice("np", {{"10.244.0.2", kReady}})}));
  CHECK(r.exitCode() == 1);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.kernel.dumpTable()->services.size() == 2);
  CHECK(r.plan.kept == std::vector<ServiceKey>{ServiceKey::tcp(A("10.96.0.50"), 80), nodeKey});
}

TEST_CASE("reconcile: a kernel refusal fails only that virtual server") {
  Rig rig;
  rig.kernel.setSchedulers({"rr"});
  std::string annotated = R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":"hashy","annotations":{"kipvs.io/scheduler":"mh"}},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.40","ports":[{"name":"http","protocol":"TCP","port":80}]}})";
  Cluster c = cluster({service("web", "10.96.0.10"), annotated, slice("web", {{"10.244.0.1", kReady}}),
                       slice("hashy", {{"10.244.0.5", kReady}})});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 1);
  REQUIRE(r.report.failures.size() == 1);
  CHECK(r.report.failures[0].status.errnum() == ENOENT);
  CHECK(rig.err.str().find("add-service TCP 10.96.0.40:80 scheduler mh") != std::string::npos);
  CHECK(rig.sleeps == 0);  // permanent for this spec: not retried
  CHECK(rig.kernel.dumpTable()->services.count(ServiceKey::tcp(A("10.96.0.10"), 80)) == 1);

  // With -o json the skipped real-server changes are listed too, as on stderr.
  Rig json;
  json.kernel.setSchedulers({"rr"});
  json.opts.output = OutputFormat::kJson;
  CHECK(json.run(c).exitCode() == 1);
  rapidjson::Document d;
  d.Parse(json.out.str().c_str());
  REQUIRE_MESSAGE(!d.HasParseError(), json.out.str());
  std::vector<std::string> names;
  for (const auto& e : d["errors"].GetArray()) names.push_back(std::string(e["name"].GetString()) + ": " + e["message"].GetString());
  CHECK(names.size() == 2);
  CHECK(std::count(names.begin(), names.end(),
                   "TCP 10.96.0.40:80: real-server changes skipped because the virtual server op failed") == 1);
}

TEST_CASE("reconcile: lost answers (ENOBUFS) are retried after a re-dump; permanent errors are not") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                       slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}})});
  auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
  rig.kernel.failNext(web, ENOBUFS);  // the add-service's answer is lost
  ReconcileResult r = rig.run(c);
  CHECK_MESSAGE(r.exitCode() == 0, rig.err.str());
  CHECK(r.report.failures.empty());
  CHECK(rig.sleeps >= 1);  // backed off before retrying
  auto t = *rig.kernel.dumpTable();
  REQUIRE(t.services.count(web) == 1);
  CHECK(t.services.at(web).dests.size() == 1);

  // An answer lost after the kernel took the op: the retry reads the service
  // again and sends only what is still missing (its real server), not the
  // add once more (EEXIST, then an update: two needless writes).
  Rig lost;
  lost.kernel.loseAnswerNext(web, ENOBUFS);
  r = lost.run(c);
  CHECK_MESSAGE(r.exitCode() == 0, lost.err.str());
  CHECK(r.kernelWrites == 4);  // 2 service adds, api's real server; then web's real server
  t = *lost.kernel.dumpTable();
  REQUIRE(t.services.count(web) == 1);
  CHECK(t.services.at(web).dests.size() == 1);

  // A dump that keeps failing transiently is retried, then reported as fatal.
  Rig rig2;
  rig2.kernel.failDumps(EINTR);
  ReconcileResult r2 = rig2.run(c);
  CHECK(r2.exitCode() == 2);
  CHECK(rig2.sleeps == 3);
  CHECK(rig2.err.str().find("reading the IPVS table") != std::string::npos);
}

namespace {

// The fake kernel, recording what each apply() call sent.
class RecordingClient : public IpvsClient {
 public:
  explicit RecordingClient(FakeIpvsClient& inner) : inner_(inner) {}
  StatusOr<Table> dumpTable() override { return inner_.dumpTable(); }
  StatusOr<std::optional<ServiceState>> dumpService(const ServiceKey& key) override { return inner_.dumpService(key); }
  std::vector<Status> apply(std::span<const Op> ops) override {
    std::vector<std::string> call;
    for (const Op& op : ops) call.push_back(op.toString());
    calls.push_back(std::move(call));
    return inner_.apply(ops);
  }
  StatusOr<Timeouts> getTimeouts() override { return inner_.getTimeouts(); }
  Status setTimeouts(const Timeouts& t) override { return inner_.setTimeouts(t); }
  Status zero(const std::optional<ServiceKey>& key) override { return inner_.zero(key); }
  Status flush() override { return inner_.flush(); }
  StatusOr<Info> info() override { return inner_.info(); }
  uint64_t writeCount() const override { return inner_.writeCount(); }

  std::vector<std::vector<std::string>> calls;

 private:
  FakeIpvsClient& inner_;
};

// n Services web-0000.. (ClusterIP 10.96.x.y; every third also a NodePort,
// whose virtual server shares the ClusterIP's real servers), each with
// `eps` endpoints from `base` on.
std::vector<std::string> manyServices(int n, int eps, int base) {
  std::vector<std::string> items;
  for (int i = 0; i < n; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "web-%04d", i);
    std::string ip = "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    std::string svc = service(name, ip);
    if (i % 3 == 0) {
      const std::string type = R"("type":"ClusterIP")";
      svc.replace(svc.find(type), type.size(), R"("type":"NodePort")");
      const std::string port = R"("targetPort":8080})";
      svc.replace(svc.find(port), port.size(), R"("targetPort":8080,"nodePort":)" + std::to_string(30000 + i) + "}");
    }
    items.push_back(svc);
    std::vector<std::pair<std::string, std::string>> list;
    for (int e = 0; e < eps; ++e) {
      int a = base + i * eps + e;
      list.push_back({"10.244." + std::to_string(a / 250) + "." + std::to_string(a % 250 + 1), kReady});
    }
    items.push_back(slice(name, list));
  }
  return items;
}

// An rr virtual server's spec, and a real server's of weight 1, for the apply tests.
ServiceSpec rrSpec() {
  ServiceSpec s;
  s.scheduler = "rr";
  s.netmask = 0xffffffff;
  return s;
}
DestSpec weight1() {
  DestSpec d;
  d.weight = 1;
  return d;
}

}  // namespace

TEST_CASE("apply: a plan streamed in chunks makes apply()'s writes in apply()'s order, converge retries included") {
  const ServiceSpec rr = rrSpec();
  const DestSpec w1 = weight1();
  const auto a = ServiceKey::tcp(A("10.96.0.1"), 80), b = ServiceKey::tcp(A("10.96.0.2"), 80);
  const DestKey da{A("10.244.0.1"), 8080}, db{A("10.244.0.2"), 8080};
  Table desired, read;
  desired.services[a].spec = desired.services[b].spec = rr;
  desired.services[a].dests[da].spec = w1;
  desired.services[b].dests[db].spec = w1;
  read.services[a].spec = read.services[b].spec = rr;
  const Plan p = plan(desired, read, Ownership{});
  // da was added after the read: its add meets EEXIST and goes again as an update.
  auto kernel = [&](FakeIpvsClient& k) {
    REQUIRE(k.addService(a, rr).isOk());
    REQUIRE(k.addService(b, rr).isOk());
    REQUIRE(k.addDest(a, da, w1).isOk());
  };
  FakeIpvsClient k1, k2;
  kernel(k1);
  kernel(k2);
  RecordingClient whole(k1), streamed(k2);
  const ApplyReport r1 = apply(p, whole);
  OpStream chunks;  // one per service
  for (const auto& sp : p.services) {
    std::vector<Op> chunk;
    for (const auto& op : sp.ops) {
      if (!op.isServiceOp()) chunk.push_back(op);
    }
    chunks.push(std::move(chunk));
  }
  chunks.close();
  const ApplyReport r2 = applyStreamed(serviceOps(desired, read), chunks, p, streamed);
  auto flat = [](const RecordingClient& c) {
    std::vector<std::string> out;
    for (const auto& call : c.calls) out.insert(out.end(), call.begin(), call.end());
    return out;
  };
  REQUIRE(flat(whole).size() == 3);  // add da, add db, then the retry
  CHECK(flat(whole)[2].rfind("update-dest", 0) == 0);
  CHECK(flat(streamed) == flat(whole));
  CHECK(r1.ok());
  CHECK(r2.ok());
  CHECK(r2.succeeded == r1.succeeded);
}

// Answers every op with one Status, as a client whose socket or family failed.
class FailingClient : public RecordingClient {
 public:
  FailingClient(FakeIpvsClient& inner, Status answer) : RecordingClient(inner), answer_(std::move(answer)) {}
  std::vector<Status> apply(std::span<const Op> ops) override {
    RecordingClient::apply({});
    return std::vector<Status>(ops.size(), answer_);
  }

 private:
  Status answer_;
};

// Holds its first write back until `release` is set (or 10 s pass): what
// runs meanwhile runs while the writes go on.
class HeldClient : public RecordingClient {
 public:
  using RecordingClient::RecordingClient;
  std::vector<Status> apply(std::span<const Op> ops) override {
    if (calls.empty()) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!release.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      heldUntilReleased = release.load();
    }
    return RecordingClient::apply(ops);
  }
  std::atomic<bool> release{false};
  bool heldUntilReleased = false;
};

TEST_CASE("reconcile: the idle work runs once, with the plan out and the writes still going; never in a dry run") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  HeldClient held(rig.kernel);
  int runs = 0;
  std::string outThen;
  uint64_t writesThen = 1;
  auto idle = [&] {
    ++runs;
    outThen = rig.out.str();
    writesThen = rig.kernel.writeCount();
    held.release = true;
  };
  ReconcileResult r =
      reconcile(c, rig.opts, held, rig.host, rig.out, rig.err, [](std::chrono::milliseconds) {}, nullptr, nullptr, idle);
  CHECK(r.exitCode() == 0);
  CHECK(runs == 1);
  CHECK(held.heldUntilReleased);  // it ran while the first write waited for it
  CHECK(writesThen == 0);
  CHECK(outThen.find("+ service TCP 10.96.0.10:80") != std::string::npos);  // the plan was out
  CHECK(rig.kernel.writeCount() == 2);

  Rig dry;
  dry.opts.dryRun = true;
  runs = 0;
  reconcile(c, dry.opts, dry.kernel, dry.host, dry.out, dry.err, [](std::chrono::milliseconds) {}, nullptr, nullptr,
            [&] { ++runs; });
  CHECK(runs == 0);
}

TEST_CASE("apply: only the kernel's own ENOENT/ESRCH make a delete done; the same errno from the socket does not") {
  const ServiceSpec rr = rrSpec();
  const DestSpec w1 = weight1();
  const auto a = ServiceKey::tcp(A("10.96.0.1"), 80), b = ServiceKey::tcp(A("10.96.0.2"), 80);
  const DestKey da{A("10.244.0.1"), 8080};
  Table desired, read;
  desired.services[a].spec = rr;
  read.services[a].spec = rr;
  read.services[a].dests[da].spec = w1;  // unwanted: delete-dest
  read.services[b].spec = rr;            // unwanted: delete-service
  Ownership own;
  own.vips.insert(A("10.96.0.2"));
  const Plan p = plan(desired, read, own);
  REQUIRE(p.opCount() == 2);
  FakeIpvsClient k;
  for (int err : {ENOENT, ESRCH}) {
    CAPTURE(err);
    // As the family lookup fails when ip_vs is gone (kUnsupported, ENOENT),
    // or as a batch sent to a family id gone stale is reported (kIo).
    for (Code code : {Code::kUnsupported, Code::kIo}) {
      FailingClient c(k, Status::error(code, "generic netlink family IPVS not found", err));
      const ApplyReport r = apply(p, c);
      CHECK_FALSE(r.ok());
      CHECK(r.succeeded == 0);
      CHECK(r.failures.size() == 2);
    }
    FailingClient kernel(k, Status::kernel(err, "no such destination / service"));
    const ApplyReport r = apply(p, kernel);
    CHECK(r.ok());
    CHECK(r.succeeded == 2);
  }
}

TEST_CASE("reconcile: real servers are planned beside the writes; the kernel gets apply()'s writes of the whole plan") {
  Rig rig;
  // Before: 1,000 Services with other endpoints, and one more that goes.
  std::vector<std::string> before = manyServices(1000, 3, 0);
  before.push_back(service("gone", "10.97.0.1"));
  REQUIRE(rig.run(cluster(before)).exitCode() == 0);

  // After: 1,200 Services (200 new; the others' endpoints move by one, so
  // every old one has adds and deletes), a bad Service, an endpoint that is
  // not an address, and two Services claiming one externalIP.
  std::vector<std::string> items = manyServices(1200, 4, 1);
  items.push_back(service("broken", "10.96.0.300"));
  items.push_back(slice("web-0001", {{"10.244.999.1", kReady}}));
  items.push_back(service("ext-a", "10.98.0.1", R"(,"externalIPs":["203.0.113.7"])"));
  items.push_back(service("ext-b", "10.98.0.2", R"(,"externalIPs":["203.0.113.7"])"));
  Cluster c = cluster(items);

  RecordingClient recorder(rig.kernel);
  rig.out.str("");
  rig.err.str("");
  ReconcileResult r = reconcile(c, rig.opts, recorder, rig.host, rig.out, rig.err, [](std::chrono::milliseconds) {});
  CHECK(r.exitCode() == 1);  // the bad objects

  // The desired state is computeDesired()'s, errors included.
  Desired whole = computeDesired(c, rig.opts.node);
  CHECK(testing::dumpDesired(r.desired) == testing::dumpDesired(whole));
  CHECK(r.objectErrors == whole.errors);
  CHECK(rig.err.str().find("default/broken") != std::string::npos);
  CHECK(rig.err.str().find("10.244.999.1") != std::string::npos);
  CHECK(rig.err.str().find("conflicts with Service default/ext-a") != std::string::npos);

  // The plan is plan()'s of that table against the table read.
  Ownership own;
  own.vips = whole.vips;
  own.vips.insert(A("10.97.0.1"));  // bound by the first run
  own.nodeIps = {A("192.168.1.10")};
  Plan expected = plan(whole.table, r.observed, own);
  std::vector<std::string> planned, got, wanted;
  for (const auto& sp : r.plan.services) {
    for (const auto& op : sp.ops) planned.push_back(op.toString());
  }
  for (const auto& sp : expected.services) {
    for (const auto& op : sp.ops) wanted.push_back(op.toString());
  }
  CHECK(planned == wanted);
  CHECK(r.plannedWrites == wanted.size());

  // The kernel got apply()'s batches: service adds and updates, every dest
  // op, the deletes, in plan order; the dest ops in more than one chunk.
  std::vector<std::string> svc, dests, dels;
  for (const auto& sp : expected.services) {
    for (const auto& op : sp.ops) {
      (sp.action == ServicePlan::Action::kDelete ? dels : op.isServiceOp() ? svc : dests).push_back(op.toString());
    }
  }
  REQUIRE(dests.size() > 2 * 4096);
  REQUIRE(!dels.empty());
  for (const auto& call : recorder.calls) got.insert(got.end(), call.begin(), call.end());
  std::vector<std::string> order = svc;
  order.insert(order.end(), dests.begin(), dests.end());
  order.insert(order.end(), dels.begin(), dels.end());
  CHECK(got == order);
  CHECK(recorder.calls.size() >= 4);  // services, two or more chunks of dests, deletes
  CHECK(recorder.calls.front() == svc);
  CHECK(recorder.calls.back() == dels);

  // Converged: a second run writes nothing.
  const uint64_t writes = rig.kernel.writeCount();
  ReconcileResult again = rig.run(c);
  CHECK(again.plan.empty());
  CHECK(rig.kernel.writeCount() == writes);
}

TEST_CASE("reconcile: a dry run plans what the real run applies") {
  Rig dry, real;
  std::vector<std::string> items = manyServices(300, 2, 0);
  items.push_back(service("broken", "10.96.0.300"));
  Cluster c = cluster(items);
  dry.opts.dryRun = true;
  ReconcileResult d = dry.run(c);
  ReconcileResult r = real.run(c);
  CHECK(dry.kernel.writeCount() == 0);
  std::vector<std::string> a, b;
  for (const auto& sp : d.plan.services) {
    for (const auto& op : sp.ops) a.push_back(op.toString());
  }
  for (const auto& sp : r.plan.services) {
    for (const auto& op : sp.ops) b.push_back(op.toString());
  }
  CHECK(a.size() == 300 * 3 + 100 * 3);
  CHECK(a == b);
  CHECK(d.objectErrors == r.objectErrors);
  CHECK(testing::dumpDesired(d.desired) == testing::dumpDesired(r.desired));
}

TEST_CASE("reconcile: while the first read is not ready, the pass works out real servers instead of waiting") {
  for (int n : {20, 1200}) {  // without and with the helper thread
    CAPTURE(n);
    Rig rig, plain;
    Cluster c = cluster(manyServices(n, 3, 0));
    int asked = 0;
    ReconcileResult r = rig.run(
        c, [&] { return rig.kernel.dumpTable(); }, [&] { return ++asked > 8; });
    ReconcileResult p = plain.run(c);
    // Asked until ready, one virtual server's worth of work between asks.
    // With the helper thread (n = 1200), the helper may have worked out
    // every real server first: then there is nothing left to do, and the
    // pass stops asking and waits for the read.
    if (n == 20) {
      CHECK(asked == 9);
    } else {
      CHECK(asked >= 1);
      CHECK(asked <= 9);
    }
    CHECK(r.exitCode() == 0);
    CHECK(testing::dumpDesired(r.desired) == testing::dumpDesired(p.desired));
    CHECK(r.plan.opCount() == p.plan.opCount());
    CHECK(rig.kernel.dumpTable()->destCount() == static_cast<size_t>(n) * 3 + (n + 2) / 3 * 3);
  }
}

TEST_CASE("reconcile: after a retry, `observed` is still the table as first read, and the summary adds up") {
  // From review g: the add of web takes effect but its answer is lost
  // (ENOBUFS); the pass re-reads web and finds nothing left to do.
  Rig lost;
  Cluster c = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                       slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}})});
  auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
  lost.kernel.loseAnswerNext(web, ENOBUFS);
  ReconcileResult r = lost.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(lost.sleeps == 1);  // it did retry
  CHECK(r.observed.services.empty());
  CHECK(r.report.failures.empty());
  CHECK(r.report.skippedDests.empty());
  // Every planned write either succeeded or failed.
  CHECK(r.report.succeeded + r.report.failures.size() == r.plannedWrites);
  // 4 planned; web's add (answer lost) and its real server (not sent) were replaced by the
  // retry's one write (the real server): 3, all applied; 4 requests went to the kernel.
  CHECK(lost.out.str().find("Applied 3 of 3 planned writes (4 kernel write requests sent, 0 failed)") != std::string::npos);
}

TEST_CASE("reconcile: kipvs0 set down (the kernel drops its IPv6 routes): the next run brings it up and adds them again") {
  Rig rig;
  Cluster c = cluster({service("web", "10.96.0.10"), service("web6", "fd00:96::10"),
                       slice("web", {{"10.244.0.1", kReady}})});
  REQUIRE(rig.run(c).exitCode() == 0);
  REQUIRE(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10"), A("fd00:96::10")});
  rig.host.addLink("kipvs0", "dummy", /*up=*/false);
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10")});
  ReconcileResult r = rig.run(c);
  CHECK(r.exitCode() == 0);
  CHECK(rig.host.isUp("kipvs0"));
  CHECK(rig.host.routes("kipvs0") == std::set<Address>{A("10.96.0.10"), A("fd00:96::10")});
  CHECK(r.kernelWrites == 0);  // the IPVS table was never touched
}

TEST_CASE("reconcile: while an EndpointSlice does not parse, the real servers of its namespace's Services do not go") {
  Rig rig;
  Cluster c1 = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                        slice("web", {{"10.244.0.1", kReady}, {"10.244.0.2", kReady}}),
                        slice("api", {{"10.244.0.5", kReady}, {"10.244.0.6", kReady}})});
  REQUIRE(rig.run(c1).exitCode() == 0);
  const auto web = ServiceKey::tcp(A("10.96.0.10"), 80), api = ServiceKey::tcp(A("10.96.0.20"), 80);

  // web's slice does not parse (which Service it was for is not known), and
  // api loses one endpoint and gains another: api's new one comes, its old
  // one stays; web keeps both.
  std::string broken = slice("web", {{"10.244.0.1", kReady}});
  broken.replace(broken.find(R"("port":8080)"), 11, R"("port":"8080")");
  Cluster c2 = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"), broken,
                        slice("api", {{"10.244.0.6", kReady}, {"10.244.0.7", kReady}})});
  REQUIRE(c2.errors.size() == 1);
  ReconcileResult r = rig.run(c2);
  CHECK(r.exitCode() == 1);
  auto t = *rig.kernel.dumpTable();
  CHECK(t.services.at(web).dests.size() == 2);
  CHECK(t.services.at(api).dests.size() == 3);  // .5 stays, .6, .7 added
  CHECK(r.plannedWrites == 1);
  CHECK_MESSAGE(rig.out.str().find("namespace default: an EndpointSlice did not parse") != std::string::npos,
                rig.out.str());

  // Parsed again: what is gone goes.
  Cluster c3 = cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                        slice("web", {{"10.244.0.1", kReady}}),
                        slice("api", {{"10.244.0.6", kReady}, {"10.244.0.7", kReady}})});
  CHECK(rig.run(c3).exitCode() == 0);
  t = *rig.kernel.dumpTable();
  CHECK(t.services.at(web).dests.size() == 1);
  CHECK(t.services.at(api).dests.size() == 2);
}

// ---- ownership and "kept" at the edges --------------------------------------
namespace {
// s with metadata.annotations {"kipvs.io/scheduler": sched} (service()'s form: name "<name>").
std::string withScheduler(std::string s, const std::string& name, const std::string& sched) {
  const std::string from = R"("name":")" + name + R"("})";
  s.replace(s.find(from), from.size(),
            R"("name":")" + name + R"(","annotations":{"kipvs.io/scheduler":")" + sched + R"("}})");
  return s;
}
}  // namespace

TEST_CASE("reconcile: a recorded virtual server kept for an invalid Service stays recorded, and goes once the Service is gone") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  REQUIRE(rig.host.record() == std::set<ServiceKey>{web80});

  // web turns invalid (a typo in its scheduler annotation): web80 is kept...
  std::string web = service("web", "10.96.0.10", R"(,"externalIPs":["192.168.1.10"])");
  Cluster invalid = cluster({withScheduler(web, "web", "lcc"), slice("web", {{"10.244.0.1", kReady}}),
                             service("other", "10.96.0.20"), slice("other", {{"10.244.0.9", kReady}})});
  ReconcileResult r = rig.run(invalid);
  INFO(rig.out.str());
  CHECK(r.exitCode() == 1);
  CHECK(r.plan.kept == std::vector<ServiceKey>{ServiceKey::tcp(A("10.96.0.10"), 80), web80});
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 1);
  // ...but it must stay in the record: nothing else marks it as kipvs's.
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});

  // web is deleted: kipvs made web80, so web80 must go.
  r = rig.run(otherOnly());
  CHECK(rig.kernel.dumpTable()->services.count(web80) == 0);
  CHECK(rig.out.str().find("left alone TCP 192.168.1.10:80") == std::string::npos);
}

TEST_CASE("reconcile: a recorded virtual server stays recorded while a Service does not parse") {
  Rig rig;
  rig.host.addLinkAddress("eth0", A("192.168.1.10"));
  const auto web80 = ServiceKey::tcp(A("192.168.1.10"), 80);
  REQUIRE(rig.run(withWebOnNodeIp()).exitCode() == 0);
  std::string web = service("web", "10.96.0.10", R"(,"externalIPs":["192.168.1.10"])");
  web.replace(web.find(R"("port":80)"), 9, R"("port":"80")");
  Cluster broken = cluster({web, slice("web", {{"10.244.0.1", kReady}}), service("other", "10.96.0.20"),
                            slice("other", {{"10.244.0.9", kReady}})});
  REQUIRE(broken.errors.size() == 1);
  ReconcileResult r = rig.run(broken);
  CHECK(r.plan.kept == std::vector<ServiceKey>{ServiceKey::tcp(A("10.96.0.10"), 80), web80});
  CHECK(rig.host.record() == std::set<ServiceKey>{web80});
}

TEST_CASE("reconcile: an invalid Service keeps its own ports' virtual servers, not a gone Service's on the same address") {
  Rig rig;
  // "old" had ClusterIP 10.96.0.30 port 80. It is deleted and the address is
  // reallocated to "fresh" (port 443), which has a typo in its annotation.
  Cluster c1 = cluster({service("web", "10.96.0.10"), service("old", "10.96.0.30"),
                        slice("web", {{"10.244.0.1", kReady}}), slice("old", {{"10.244.0.9", kReady}})});
  REQUIRE(rig.run(c1).exitCode() == 0);
  const auto old80 = ServiceKey::tcp(A("10.96.0.30"), 80);
  REQUIRE(rig.kernel.dumpTable()->services.count(old80) == 1);
  std::string fresh = withScheduler(service("fresh", "10.96.0.30"), "fresh", "lcc");
  fresh.replace(fresh.find(R"("port":80)"), 9, R"("port":443)");
  Cluster c2 = cluster({service("web", "10.96.0.10"), fresh, slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c2);
  INFO(rig.out.str());
  // old80 is no port of "fresh": nothing keeps it. It should go.
  CHECK(rig.kernel.dumpTable()->services.count(old80) == 0);
  CHECK(r.plan.kept.empty());
}

TEST_CASE("reconcile: a foreign virtual server on an invalid Service's address is left alone, not kept") {
  Rig rig;
  const auto foreign = ServiceKey::tcp(A("203.0.113.5"), 8443);  // ipvsadm -A by hand
  ServiceSpec wlc;
  wlc.scheduler = "wlc";
  wlc.netmask = 0xffffffff;
  REQUIRE(rig.kernel.addService(foreign, wlc).isOk());
  Cluster c = cluster({service("web", "10.96.0.10"),
                       withScheduler(service("ext", "10.96.0.40", R"(,"externalIPs":["203.0.113.5"])"), "ext", "x"),
                       slice("web", {{"10.244.0.1", kReady}})});
  ReconcileResult r = rig.run(c);
  INFO(rig.out.str());
  CHECK(r.plan.leftAlone == std::vector<ServiceKey>{foreign});
  CHECK(rig.out.str().find("left alone TCP 203.0.113.5:8443") != std::string::npos);
}

TEST_CASE("reconcile: an externalIP does not take over an invalid Service's ClusterIP virtual server (CVE-2020-8554)") {
  Rig rig;
  const auto api80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  std::string evil = R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"mallory","name":"evil"},)"
                     R"("spec":{"type":"ClusterIP","clusterIP":"10.96.0.99","externalIPs":["10.96.0.20"],)"
                     R"("ports":[{"name":"http","protocol":"TCP","port":80}]}})";
  std::string evilSlice = R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"namespace":"mallory",)"
                          R"("name":"evil-abc","labels":{"kubernetes.io/service-name":"evil"}},"addressType":"IPv4",)"
                          R"("ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[{"addresses":["10.244.6.66"]}]})";
  // api valid: evil's externalIP loses to api's ClusterIP.
  Cluster c1 = cluster({service("api", "10.96.0.20"), slice("api", {{"10.244.0.2", kReady}}), evil, evilSlice});
  REQUIRE(rig.run(c1).exitCode() == 1);
  REQUIRE(rig.kernel.dumpTable()->services.at(api80).dests.count(DestKey{A("10.244.0.2"), 8080}) == 1);
  // api gets a typo in an annotation: its virtual server must stay as it is.
  Cluster c2 = cluster({withScheduler(service("api", "10.96.0.20"), "api", "lcc"),
                        slice("api", {{"10.244.0.2", kReady}}), evil, evilSlice});
  ReconcileResult r = rig.run(c2);
  INFO(rig.out.str());
  const ipvs::Table after = *rig.kernel.dumpTable();
  const auto& dests = after.services.at(api80).dests;
  CHECK(dests.count(DestKey{A("10.244.0.2"), 8080}) == 1);
  CHECK(dests.count(DestKey{A("10.244.6.66"), 8080}) == 0);
}

TEST_CASE("reconcile: a later copy of a Service that does not parse overrides the earlier one: nothing of it changes") {
  Rig rig;
  // What is live: web with scheduler wlc (file 2's copy, the override).
  Cluster live = cluster({withScheduler(service("web", "10.96.0.10"), "web", "wlc"),
                          slice("web", {{"10.244.0.1", kReady}})});
  REQUIRE(rig.run(live).exitCode() == 0);
  const auto web80 = ServiceKey::tcp(A("10.96.0.10"), 80);
  REQUIRE(rig.kernel.dumpTable()->services.at(web80).spec.scheduler == "wlc");
  // -f base.json -f override.json: base has web (rr); the override's web does not parse this time.
  Cluster base = cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  std::string broken = withScheduler(service("web", "10.96.0.10"), "web", "wlc");
  broken.replace(broken.find(R"("port":80)"), 9, R"("port":"80")");
  Cluster override_ = cluster({broken});
  REQUIRE(override_.errors.size() == 1);
  base.merge(std::move(override_));
  ReconcileResult r = rig.run(base);
  INFO(rig.out.str());
  CHECK(r.exitCode() == 1);
  CHECK(r.kernelWrites == 0);
  CHECK(rig.kernel.dumpTable()->services.at(web80).spec.scheduler == "wlc");
}

TEST_CASE("reconcile: an item whose kind is given twice may be a Service: nothing unwanted is deleted") {
  Rig rig;
  const auto api80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  REQUIRE(rig.run(cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                           slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}})}))
              .exitCode() == 0);
  std::string api = service("api", "10.96.0.20");
  api.replace(api.find(R"("kind":"Service")"), 16, R"("kind":"Service","kind":"Service")");
  Cluster c = cluster({service("web", "10.96.0.10"), api, slice("web", {{"10.244.0.1", kReady}}),
                       slice("api", {{"10.244.0.2", kReady}})});
  REQUIRE(c.errors.size() == 1);
  INFO(c.errors[0].toString());
  ReconcileResult r = rig.run(c);
  INFO(rig.out.str());
  CHECK(rig.kernel.dumpTable()->services.count(api80) == 1);
}

TEST_CASE("reconcile: a List inside the List whose items do not parse: nothing unwanted is deleted") {
  Rig rig;
  const auto api80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  REQUIRE(rig.run(cluster({service("web", "10.96.0.10"), service("api", "10.96.0.20"),
                           slice("web", {{"10.244.0.1", kReady}}), slice("api", {{"10.244.0.2", kReady}})}))
              .exitCode() == 0);
  std::string nested = R"({"kind":"ServiceList","items":)" + service("api", "10.96.0.20") + "}";  // items: an object
  Cluster c = cluster({service("web", "10.96.0.10"), nested, slice("web", {{"10.244.0.1", kReady}}),
                       slice("api", {{"10.244.0.2", kReady}})});
  REQUIRE(c.errors.size() == 1);
  INFO(c.errors[0].toString());
  rig.run(c);
  INFO(rig.out.str());
  CHECK(rig.kernel.dumpTable()->services.count(api80) == 1);
}

TEST_CASE("reconcile: only invalid Services and no EndpointSlice: not refused, since what they have is kept") {
  Rig rig;
  const auto api80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  REQUIRE(rig.run(cluster({service("api", "10.96.0.20"), slice("api", {{"10.244.0.2", kReady}})})).exitCode() == 0);
  // api turns invalid, and its slice is not in the input (nothing else is).
  ReconcileResult r = rig.run(cluster({withScheduler(service("api", "10.96.0.20"), "api", "lcc")}));
  INFO(rig.out.str(), rig.err.str());
  CHECK(r.exitCode() == 1);
  CHECK(r.plan.kept == std::vector<ServiceKey>{api80});
}

TEST_CASE("reconcile: an earlier copy that does not parse, overridden by a valid later one, is forgotten") {
  Rig rig;
  const auto old80 = ServiceKey::tcp(A("10.96.0.30"), 80);
  REQUIRE(rig.run(cluster({service("web", "10.96.0.10"), service("old", "10.96.0.30"),
                           slice("web", {{"10.244.0.1", kReady}}), slice("old", {{"10.244.0.9", kReady}})}))
              .exitCode() == 0);
  // "old" is deleted. base.json has a stale, broken copy of web; override.json the current one.
  std::string broken = service("web", "10.96.0.10");
  broken.replace(broken.find(R"("port":80)"), 9, R"("port":"80")");
  Cluster base = cluster({broken});
  base.merge(cluster({service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})}));
  REQUIRE(base.services.size() == 1);
  ReconcileResult r = rig.run(base);
  INFO(rig.out.str(), rig.err.str());
  CHECK(rig.kernel.dumpTable()->services.count(old80) == 0);
  CHECK(r.exitCode() == 0);
}

TEST_CASE("reconcile: an EndpointSlice whose namespace does not parse keeps every namespace's real servers") {
  Rig rig;
  auto prodSvc = [](const std::string& ns) {
    return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"prod","name":"api"},)"
           R"("spec":{"clusterIP":"10.96.0.20","ports":[{"name":"http","protocol":"TCP","port":80}]}})" + ns;
  };
  auto prodSlice = [](const std::string& nsJson, const std::string& eps) {
    return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"namespace":)" + nsJson +
           R"(,"name":"api-abc","labels":{"kubernetes.io/service-name":"api"}},"addressType":"IPv4",)"
           R"("ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[)" + eps + "]}";
  };
  const auto api80 = ServiceKey::tcp(A("10.96.0.20"), 80);
  REQUIRE(rig.run(cluster({prodSvc(""), prodSlice(R"("prod")", R"({"addresses":["10.244.0.2"]})")})).exitCode() == 0);
  REQUIRE(rig.kernel.dumpTable()->services.at(api80).dests.size() == 1);
  // The slice's namespace is mangled: which namespace it is in is unknown.
  Cluster c = cluster({prodSvc(""), prodSlice("7", R"({"addresses":["10.244.0.2"]})"),
                       service("web", "10.96.0.10"), slice("web", {{"10.244.0.1", kReady}})});
  REQUIRE(c.errors.size() == 1);
  INFO(c.errors[0].toString());
  ReconcileResult r = rig.run(c);
  INFO(rig.out.str());
  CHECK(rig.kernel.dumpTable()->services.at(api80).dests.size() == 1);
}
