// Golden tests for every renderer: one plan with every op kind (creates,
// in-place updates, dest adds/updates/deletes, drains, deletions, foreign
// services left alone) and tables with every spec option, compared byte for
// byte with test/fixtures/render/. KIPVS_UPDATE_GOLDEN=1 rewrites the files
// (then review the diff: they are the reference for output compatibility).
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "controller/plan.h"
#include "controller/render.h"
#include "test/controller/k8s_json.h"

using namespace kipvs;
using namespace kipvs::controller;
using namespace kipvs::ipvs;

namespace {

Address A(const char* s) { return *Address::parse(s); }

DestKey D(const char* addr, uint16_t port) { return DestKey{A(addr), port}; }

DestState dest(FwdMethod fwd, int32_t weight, uint32_t active = 0, uint32_t inactive = 0) {
  DestState d;
  d.spec.fwd = fwd;
  d.spec.weight = weight;
  d.counters.activeConns = active;
  d.counters.inactiveConns = inactive;
  return d;
}

ServiceSpec spec(const std::string& sched, uint32_t flags = 0, uint32_t timeout = 0, uint32_t netmask = 0xffffffff,
                 const std::string& pe = "") {
  return ServiceSpec{sched, flags, timeout, netmask, pe};
}

Stats stats(uint64_t base) {
  return Stats{base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, base + 7, base + 8, base + 9};
}

// Desired and actual tables whose plan has every op kind and every spec option.
struct Scenario {
  Desired desired;
  Table actual;
  Ownership own;
  Plan plan;

  Scenario() {
    auto& want = desired.table.services;

    // Created: two dests, thresholds.
    auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
    want[web].spec = spec("rr");
    want[web].dests[D("10.244.1.1", 8080)] = dest(FwdMethod::kMasq, 1);
    DestState thr = dest(FwdMethod::kMasq, 3);
    thr.spec.upperThreshold = 100;
    thr.spec.lowerThreshold = 10;
    want[web].dests[D("10.244.1.2", 8080)] = thr;
    desired.origins[web] = {"default/web", "http", "ClusterIP"};

    // Updated in place (rr -> persistent wlc with a /24 mask, sip, one-packet);
    // dests: one kept, one reweighted, one added, one draining (quiesced), one
    // already at weight 0 with connections, one without connections (deleted).
    auto lb = ServiceKey::tcp(A("10.96.0.11"), 443);
    want[lb].spec = spec("wlc", kSvcFlagPersistent | kSvcFlagOnePacket, 10800, 0xffffff00, "sip");
    want[lb].dests[D("10.244.2.1", 8443)] = dest(FwdMethod::kMasq, 1);
    want[lb].dests[D("10.244.2.2", 8443)] = dest(FwdMethod::kMasq, 5);
    want[lb].dests[D("10.244.2.3", 8443)] = dest(FwdMethod::kMasq, 1);
    auto& lbHave = actual.services[lb];
    lbHave.spec = spec("rr");
    lbHave.dests[D("10.244.2.1", 8443)] = dest(FwdMethod::kMasq, 1, 4, 2);
    lbHave.dests[D("10.244.2.2", 8443)] = dest(FwdMethod::kMasq, 1);
    lbHave.dests[D("10.244.2.9", 8443)] = dest(FwdMethod::kMasq, 2, 3, 7);
    lbHave.dests[D("10.244.2.10", 8443)] = dest(FwdMethod::kMasq, 0, 0, 1);
    lbHave.dests[D("10.244.2.11", 8443)] = dest(FwdMethod::kMasq, 1);
    desired.origins[lb] = {"ns/w\xc3\xa9" "b\"x\\y", "", "LoadBalancer"};

    // Dests only, UDP: a departing dest with connections goes at once; route -> GUE tunnel.
    auto dns = ServiceKey::make(Protocol::kUdp, A("10.96.0.12"), 53);
    want[dns].spec = spec("rr");
    DestState gue = dest(FwdMethod::kTunnel, 2);
    gue.spec.tunType = TunnelType::kGue;
    gue.spec.tunPort = 6080;
    gue.spec.tunFlags = kTunFlagCsum;
    want[dns].dests[D("10.244.3.1", 53)] = gue;
    auto& dnsHave = actual.services[dns];
    dnsHave.spec = spec("rr");
    dnsHave.dests[D("10.244.3.1", 53)] = dest(FwdMethod::kRoute, 2);
    dnsHave.dests[D("10.244.3.2", 53)] = dest(FwdMethod::kMasq, 1, 9, 9);

    // Created, IPv6 SCTP, mh with both flags, /64 persistence; dests of both
    // families, GRE and IPIP tunnels, no csum / remote csum.
    auto v6 = ServiceKey::make(Protocol::kSctp, A("fd00::10"), 9000);
    want[v6].spec = spec("mh", kSvcFlagPersistent | kSvcFlagSched1 | kSvcFlagSched2, 60, 64);
    want[v6].dests[D("fd00:244::1", 9000)] = dest(FwdMethod::kMasq, 1);
    want[v6].dests[D("10.244.4.4", 9000)] = dest(FwdMethod::kTunnel, 1);
    DestState gre = dest(FwdMethod::kTunnel, 65535);
    gre.spec.tunType = TunnelType::kGre;
    gre.spec.tunFlags = kTunFlagRemCsum;
    want[v6].dests[D("fd00:244::2", 9000)] = gre;
    for (const char* a : {"::ffff:10.1.2.3", "::10.1.2.3", "2001:db8:0:0:1:0:0:1", "1:2:3:4:5:6:7:8", "fe80::", "::"}) {
      want[v6].dests[D(a, 0)] = dest(FwdMethod::kMasq, 1);
    }
    for (const char* a : {"0.0.0.0", "1.0.0.255", "100.10.1.0"}) {
      want[web].dests[D(a, 65535)] = dest(FwdMethod::kMasq, 1);
    }
    desired.origins[v6] = {"default/sctp", "sctp-port", "ExternalIP"};

    // Created fwmark services: sh with every flag bit; IPv6 with the default /128.
    auto mark = ServiceKey::mark(Family::kV4, 7);
    want[mark].spec = spec("sh", kSvcFlagSched1 | kSvcFlagSched2 | kSvcFlagSched3);
    want[mark].dests[D("10.1.1.1", 0)] = dest(FwdMethod::kRoute, 1);
    want[mark].dests[D("10.1.1.2", 0)] = dest(FwdMethod::kLocal, 0);
    auto mark6 = ServiceKey::mark(Family::kV6, 4294967295u);
    want[mark6].spec = spec("dh", kSvcFlagPersistent, 1, 128);

    // Unnormalized specs still render: persistent without timeout, mask 0,
    // other schedulers' flag bits, odd characters in a scheduler name.
    auto odd = ServiceKey::tcp(A("10.96.0.13"), 65535);
    want[odd].spec = spec("r\"r\\\x01", kSvcFlagPersistent | kSvcFlagSched1 | kSvcFlagSched2, 0, 0);
    want[odd].dests[D("255.255.255.254", 1)] = dest(FwdMethod::kBypass, -1);
    actual.services[odd].spec = spec("lc");
    desired.origins[odd] = {"default/odd", "", "NodePort"};

    // Nothing to write, only draining (already at weight 0).
    auto drain = ServiceKey::tcp(A("10.96.0.14"), 80);
    want[drain].spec = spec("rr");
    actual.services[drain].spec = spec("rr");
    actual.services[drain].dests[D("10.244.5.5", 80)] = dest(FwdMethod::kMasq, 0, 1, 0);

    // Converged: no entry in the plan.
    auto same = ServiceKey::tcp(A("10.96.0.15"), 80);
    want[same].spec = spec("rr");
    actual.services[same].spec = spec("rr");

    // Ours and stale: deleted (one with dests, a NodePort one).
    auto stale = ServiceKey::tcp(A("10.96.0.99"), 80);
    actual.services[stale].spec = spec("rr");
    actual.services[stale].dests[D("10.244.9.9", 80)] = dest(FwdMethod::kMasq, 1, 5, 5);
    actual.services[ServiceKey::tcp(A("198.51.100.10"), 30080)].spec = spec("rr");
    own.vips = {A("10.96.0.10"), A("10.96.0.11"), A("10.96.0.99")};
    own.nodeIps = {A("198.51.100.10")};

    // Foreign: left alone.
    actual.services[ServiceKey::tcp(A("172.16.5.5"), 80)].spec = spec("wlc");
    actual.services[ServiceKey::tcp(A("198.51.100.10"), 80)].spec = spec("rr");
    actual.services[ServiceKey::mark(Family::kV6, 8)].spec = spec("rr");

    desired.notes = {"zone weights need a weight-aware scheduler: \"rr\" ignores them",
                     "ctl\n\t\r\b\f\x01\x1f\x7f \xe2\x9c\x93 \\ /"};

    plan = controller::plan(desired.table, actual, own);
  }
};

// The actual table with counters and stats: shares, "-" when a service has no
// connections, big 64-bit counters.
Table withCounters(Table t) {
  uint64_t n = 1;
  for (auto& [k, s] : t.services) {
    s.stats = stats(n * 1000);
    for (auto& [dk, d] : s.dests) {
      d.counters.persistentConns = static_cast<uint32_t>(n);
      d.counters.stats = stats(18446744073709551615ull - 9 - n);
      ++n;
    }
    ++n;
  }
  return t;
}

void checkGolden(const std::string& name, const std::string& got) {
  const std::string path = testing::sourcePath("test/fixtures/render/" + name);
  if (const char* u = std::getenv("KIPVS_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(path, std::ios::binary) << got;
    return;
  }
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing golden file " << path);
  std::stringstream want;
  want << in.rdbuf();
  CHECK_MESSAGE(got == want.str(), "differs from " << path);
}

template <typename F>
std::string capture(F&& render) {
  std::ostringstream out;
  render(out);
  return out.str();
}

}  // namespace

TEST_CASE("render: the scenario plan has every op kind") {
  Scenario s;
  bool seen[6] = {};
  for (const auto& sp : s.plan.services) {
    for (const auto& op : sp.ops) seen[static_cast<int>(op.kind)] = true;
  }
  for (bool b : seen) CHECK(b);
  CHECK(s.plan.drainingCount() == 3);
  CHECK(s.plan.leftAlone.size() == 3);
}

TEST_CASE("render: plans, text and JSON, with and without context") {
  Scenario s;
  const PlanContext full{&s.desired, &s.actual};
  const PlanContext none{};
  checkGolden("plan.txt", capture([&](std::ostream& o) { renderPlanText(s.plan, full, o); }));
  checkGolden("plan.json", capture([&](std::ostream& o) { renderPlanJson(s.plan, full, o); }));
  checkGolden("plan-noctx.txt", capture([&](std::ostream& o) { renderPlanText(s.plan, none, o); }));
  checkGolden("plan-noctx.json", capture([&](std::ostream& o) { renderPlanJson(s.plan, none, o); }));
  const Plan empty;
  checkGolden("plan-empty.txt", capture([&](std::ostream& o) { renderPlanText(empty, none, o); }));
  checkGolden("plan-empty.json", capture([&](std::ostream& o) { renderPlanJson(empty, none, o); }));
}

TEST_CASE("render: tables, as listing, JSON and ipvsadm rules") {
  Scenario s;
  const Table counted = withCounters(s.actual);
  for (const auto& [name, table] : {std::pair<std::string, const Table*>{"table-desired", &s.desired.table},
                                    {"table-actual", &counted}}) {
    checkGolden(name + ".txt", capture([&](std::ostream& o) { renderTableText(*table, o); }));
    checkGolden(name + ".json", capture([&](std::ostream& o) { renderTableJson(*table, o); }));
    checkGolden(name + ".ipvsadm", capture([&](std::ostream& o) { renderIpvsadmRules(*table, o); }));
  }
  const Table empty;
  checkGolden("table-empty.txt", capture([&](std::ostream& o) { renderTableText(empty, o); }));
  checkGolden("table-empty.json", capture([&](std::ostream& o) { renderTableJson(empty, o); }));
  checkGolden("table-empty.ipvsadm", capture([&](std::ostream& o) { renderIpvsadmRules(empty, o); }));
}

TEST_CASE("render: jsonEscape") {
  CHECK(jsonEscape("") == "");
  CHECK(jsonEscape("plain ascii") == "plain ascii");
  CHECK(jsonEscape("a\"b\\c\nd\te\r\x01\x1f\x7f\xc3\xa9") ==
        "a\\\"b\\\\c\\nd\\te\\u000d\\u0001\\u001f\x7f\xc3\xa9");
  CHECK(jsonEscape(std::string("\0", 1)) == "\\u0000");
  // Not UTF-8 (the input is not checked for it): U+FFFD, as Go writes it, so the output stays JSON.
  CHECK(jsonEscape("x\x80y") == "x\\ufffdy");
  CHECK(jsonEscape("z\xc3") == "z\\ufffd");                         // cut short
  CHECK(jsonEscape("\xc0\xaf") == "\\ufffd\\ufffd");                // overlong '/'
  CHECK(jsonEscape("\xed\xa0\x80") == "\\ufffd\\ufffd\\ufffd");     // a surrogate
  CHECK(jsonEscape("\xf4\x90\x80\x80") == "\\ufffd\\ufffd\\ufffd\\ufffd");  // past U+10FFFF
  CHECK(jsonEscape("\xe2\x82\xac \xf0\x9f\x98\x80") == "\xe2\x82\xac \xf0\x9f\x98\x80");  // kept whole
}

TEST_CASE("render: a record larger than the output buffer") {
  std::string note;
  for (int i = 0; note.size() < (1 << 20); ++i) note += "part " + std::to_string(i) + (i % 7 ? " " : "\"\\\n\x01");
  Desired desired;
  desired.notes = {note, "after"};
  const Plan empty;
  const PlanContext ctx{&desired, nullptr};
  CHECK(capture([&](std::ostream& o) { renderPlanJson(empty, ctx, o); }) ==
        "{\"writes\":0,\"draining\":0,\"services\":[\n],\"leftAlone\":[],\"kept\":[],\"notes\":[\"" + jsonEscape(note) +
            "\",\"after\"]}\n");
  CHECK(capture([&](std::ostream& o) { renderPlanText(empty, ctx, o); }) ==
        "Plan: 0 virtual servers to add, 0 to update, 0 to delete; 0 real-server changes; 0 kernel writes\nnote: " +
            note + "\nnote: after\n");

  Table t;
  auto k = ServiceKey::tcp(A("10.0.0.1"), 80);
  t.services[k].spec = spec(std::string(300 << 10, 'x'));
  t.services[k].dests[D("10.0.0.2", 80)] = dest(FwdMethod::kMasq, 1);
  CHECK(capture([&](std::ostream& o) { renderIpvsadmRules(t, o); }) ==
        "-A -t 10.0.0.1:80 -s " + std::string(300 << 10, 'x') + "\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n");
}

TEST_CASE("render: a real-server edit shows every field it changes") {
  const auto web = ServiceKey::tcp(A("10.96.0.10"), 80);
  Table want, have;
  want.services[web].spec = have.services[web].spec = spec("rr");
  want.services[web].dests[D("10.244.1.1", 8080)] = dest(FwdMethod::kMasq, 1);
  want.services[web].dests[D("10.244.1.2", 8080)] = dest(FwdMethod::kMasq, 1);
  DestState byHand = dest(FwdMethod::kMasq, 1);  // ipvsadm -e ... -x 100 -y 10
  byHand.spec.upperThreshold = 100;
  byHand.spec.lowerThreshold = 10;
  have.services[web].dests[D("10.244.1.1", 8080)] = byHand;
  have.services[web].dests[D("10.244.1.2", 8080)] = dest(FwdMethod::kRoute, 3);
  Desired desired;
  desired.table = want;
  const Plan p = plan(want, have, Ownership{});
  const std::string text = capture([&](std::ostream& o) { renderPlanText(p, PlanContext{&desired, &have}, o); });
  INFO(text);
  CHECK(text.find("~ 10.244.1.1:8080 masq weight 1 => weight 1 thresholds 10..100 => 0..0\n") != std::string::npos);
  CHECK(text.find("~ 10.244.1.2:8080 route => masq weight 3 => weight 1\n") != std::string::npos);
}

TEST_CASE("render: a service of a protocol kipvs never makes is named, and left out of ipvsadm rules") {
  Table t;
  const auto icmp = ServiceKey::make(static_cast<Protocol>(1), A("10.0.0.2"), 0);
  const auto web = ServiceKey::tcp(A("10.0.0.1"), 80);
  t.services[icmp].spec = spec("rr");
  t.services[web].spec = spec("rr");
  std::vector<ServiceKey> leftOut;
  CHECK(capture([&](std::ostream& o) { leftOut = renderIpvsadmRules(t, o); }) == "-A -t 10.0.0.1:80 -s rr\n");
  CHECK(leftOut == std::vector<ServiceKey>{icmp});
  CHECK(capture([&](std::ostream& o) { renderTableText(t, o); }).find("IP_1 10.0.0.2:0") != std::string::npos);
  CHECK(capture([&](std::ostream& o) { renderTableJson(t, o); }).find("\"protocol\":\"IP_1\"") != std::string::npos);
}

TEST_CASE("render: a pass stopped before any write, as JSON") {
  std::ostringstream a, b;
  renderFatalJson(Status::error(Code::kTimeout, "process 7 holds the lock \"kipvs-ipvs\"", EBUSY), false, a);
  CHECK(a.str() ==
        "{\"dryRun\":false,\"fatal\":{\"message\":\"process 7 holds the lock \\\"kipvs-ipvs\\\"\",\"errno\":\"EBUSY\"},"
        "\"exitCode\":2}\n");
  renderFatalJson(Status::error(Code::kParse, "in.json: invalid JSON at byte 3"), true, b);
  CHECK(b.str() == "{\"dryRun\":true,\"fatal\":{\"message\":\"in.json: invalid JSON at byte 3\"},\"exitCode\":2}\n");
}
