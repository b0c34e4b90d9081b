// ipvsadm as the independent witness: what our client programs, ipvsadm reads
// back the same; what we print as rules, `ipvsadm -R` restores exactly.
#include <fstream>

#include "controller/render.h"
#include "test/kernel/netns.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using kipvs::kerneltest::lineDiff;
using kipvs::kerneltest::lines;
using kipvs::kerneltest::run;

namespace {

Address A(const char* s) { return *Address::parse(s); }

// A table that uses every feature the spine supports (local forwarding aside:
// ipvsadm prints it as -g, so it cannot round-trip through ipvsadm).
Table featureTable() {
  Table t;
  auto svc = [&](const ServiceKey& k, const char* sched, uint32_t flags = 0, uint32_t timeout = 0,
                 uint32_t netmask = 0) -> ServiceState& {
    ServiceState& s = t.services[k];
    s.spec.scheduler = sched;
    s.spec.flags = flags;
    s.spec.timeout = timeout;
    s.spec.netmask = netmask;
    return s;
  };
  auto dst = [](ServiceState& s, const char* a, uint16_t port, int32_t w, FwdMethod f = FwdMethod::kMasq) -> DestSpec& {
    DestSpec& d = s.dests[DestKey{A(a), port}].spec;
    d.weight = w;
    d.fwd = f;
    return d;
  };
  const char* scheds[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"};
  uint16_t port = 8000;
  for (const char* s : scheds) {
    auto& st = svc(ServiceKey::tcp(A("10.0.1.1"), port++), s);
    dst(st, "10.1.0.1", 80, 1);
    dst(st, "10.1.0.2", 80, 3);
  }
  auto& persist = svc(ServiceKey::tcp(A("10.0.0.1"), 80), "wlc", kSvcFlagPersistent, 3600, 0xffffff00);
  dst(persist, "10.1.0.1", 80, 0);  // weight 0: quiesced
  DestSpec& th = dst(persist, "10.1.0.2", 80, 5);
  th.upperThreshold = 100;
  th.lowerThreshold = 50;
  auto& sh = svc(ServiceKey::tcp(A("10.0.0.2"), 443), "sh", kSvcFlagSched1 | kSvcFlagSched2);
  dst(sh, "10.1.0.3", 443, 1);
  auto& mh = svc(ServiceKey::tcp(A("10.0.0.2"), 444), "mh", kSvcFlagSched1 | kSvcFlagSched2);
  dst(mh, "10.1.0.3", 444, 1);
  auto& udp = svc(ServiceKey::make(Protocol::kUdp, A("10.0.0.3"), 53), "rr", kSvcFlagOnePacket);
  dst(udp, "10.1.0.4", 53, 1);
  auto& sctp = svc(ServiceKey::make(Protocol::kSctp, A("10.0.0.4"), 3868), "lc");
  dst(sctp, "10.1.0.5", 3868, 1);
  auto& v6 = svc(ServiceKey::tcp(A("fd00::10"), 80), "rr", kSvcFlagPersistent, 600, 64);
  dst(v6, "fd00:1::1", 8080, 2);
  dst(v6, "fd00:1::2", 80, 1, FwdMethod::kRoute);
  auto& tun = svc(ServiceKey::tcp(A("10.0.0.5"), 80), "wrr");
  DestSpec& ipip = dst(tun, "10.1.0.6", 80, 1, FwdMethod::kTunnel);
  ipip.tunType = TunnelType::kIpip;
  DestSpec& gue = dst(tun, "10.1.0.7", 80, 2, FwdMethod::kTunnel);
  gue.tunType = TunnelType::kGue;
  gue.tunPort = 6080;
  gue.tunFlags = kTunFlagCsum;
  DestSpec& gre = dst(tun, "10.1.0.8", 80, 2, FwdMethod::kTunnel);
  gre.tunType = TunnelType::kGre;
  gre.tunFlags = kTunFlagNoCsum;
  dst(tun, "10.1.0.9", 80, 1, FwdMethod::kRoute);
  auto& fwm = svc(ServiceKey::mark(Family::kV4, 7), "rr");
  dst(fwm, "10.1.0.6", 0, 1);
  auto& fwm6 = svc(ServiceKey::mark(Family::kV6, 8), "sh", kSvcFlagPersistent, 300);
  dst(fwm6, "fd00:1::3", 0, 1);
  normalize(t);
  return t;
}

void program(IpvsClient& c, const Table& t) {
  std::vector<Op> svcOps, destOps;
  for (const auto& [k, s] : t.services) {
    svcOps.push_back(Op::addService(k, s.spec));
    for (const auto& [dk, d] : s.dests) destOps.push_back(Op::addDest(k, dk, d.spec));
  }
  for (const auto* ops : {&svcOps, &destOps}) {
    auto r = c.apply(*ops);
    for (size_t i = 0; i < r.size(); ++i) REQUIRE_MESSAGE(r[i].isOk(), (*ops)[i].toString() << ": " << r[i].toString());
  }
}

void requireSameSpecs(const Table& got, const Table& want) {
  REQUIRE(got.services.size() == want.services.size());
  for (const auto& [k, s] : want.services) {
    INFO("service " << k.toString());
    auto it = got.services.find(k);
    REQUIRE(it != got.services.end());
    CHECK(it->second.spec == s.spec);
    REQUIRE(it->second.dests.size() == s.dests.size());
    for (const auto& [dk, d] : s.dests) {
      INFO("dest " << dk.toString());
      auto di = it->second.dests.find(dk);
      REQUIRE(di != it->second.dests.end());
      CHECK(di->second.spec == d.spec);
    }
  }
}

std::string rules(const Table& t) {
  std::ostringstream os;
  controller::renderIpvsadmRules(t, os);
  return os.str();
}

// ipvsadm -S leaves thresholds out (so its own save/restore loses them); our
// rules carry -x/-y, which ipvsadm -R reads. Compare the rest line for line.
std::string withoutThresholds(std::string text) {
  for (const char* opt : {" -x ", " -y "}) {
    for (size_t p; (p = text.find(opt)) != std::string::npos;) {
      size_t end = p + 4;
      while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
      text.erase(p, end - p);
    }
  }
  return text;
}

}  // namespace

TEST_CASE("ipvsadm reads back exactly what the client programmed") {
  kerneltest::enterFreshNetns();
  auto c = kerneltest::openClient();
  Table want = featureTable();
  program(*c, want);
  auto got = c->dumpTable();
  REQUIRE(got.isOk());
  requireSameSpecs(*got, want);

  // ipvsadm's own view, line for line (as sets: ipvsadm sorts differently).
  std::string witness = run("ipvsadm -Sn");
  const std::string ours = withoutThresholds(rules(*got));
  CHECK_MESSAGE(lines(witness) == lines(ours), "ipvsadm -Sn vs kipvs rules:\n" << lineDiff(lines(witness), lines(ours)));
  CHECK(rules(*got).find("-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 5 -x 100 -y 50\n") != std::string::npos);

  // Thresholds are not in -S output; ipvsadm shows them with --thresholds.
  std::string th = run("ipvsadm -Ln --thresholds -t 10.0.0.1:80");
  CHECK(th.find("10.1.0.2:80") != std::string::npos);
  std::istringstream in(th);
  std::string line;
  bool seen = false;
  while (std::getline(in, line)) {
    if (line.find("-> 10.1.0.2:80") == std::string::npos) continue;
    std::istringstream ls(line);
    std::string arrow, addr;
    unsigned upper = 0, lower = 0;
    ls >> arrow >> addr >> upper >> lower;
    CHECK(upper == 100);
    CHECK(lower == 50);
    seen = true;
  }
  CHECK(seen);
}

TEST_CASE("kipvs dump --output ipvsadm | ipvsadm -R into an empty table reproduces it exactly") {
  kerneltest::enterFreshNetns();
  auto c = kerneltest::openClient();
  Table want = featureTable();
  program(*c, want);
  auto original = c->dumpTable();
  REQUIRE(original.isOk());
  std::string saved = run("ipvsadm -Sn");
  // The binary, as a user runs it.
  std::string dumped = run("build/kipvs dump --output ipvsadm");
  CHECK_MESSAGE(lines(withoutThresholds(dumped)) == lines(saved), lineDiff(lines(withoutThresholds(dumped)), lines(saved)));

  std::string path = "/tmp/kipvs-rules-" + std::to_string(getpid());
  {
    std::ofstream f(path);
    f << dumped;
  }
  kerneltest::enterFreshNetns();  // an empty table
  auto fresh = kerneltest::openClient();
  REQUIRE(fresh->dumpTable()->services.empty());
  run("ipvsadm -R < " + path);
  std::remove(path.c_str());
  auto restored = fresh->dumpTable();
  REQUIRE(restored.isOk());
  requireSameSpecs(*restored, *original);
  std::string after = run("ipvsadm -Sn");
  CHECK_MESSAGE(lines(after) == lines(saved), lineDiff(lines(after), lines(saved)));
}

TEST_CASE("edits in place keep the service: counters survive a scheduler and weight change") {
  kerneltest::enterFreshNetns();
  auto c = kerneltest::openClient();
  auto k = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec s;
  s.scheduler = "rr";
  s.netmask = 0xffffffff;
  REQUIRE(c->addService(k, s).isOk());
  REQUIRE(c->addDest(k, DestKey{A("10.1.0.1"), 80}, DestSpec{}).isOk());
  s.scheduler = "wlc";
  REQUIRE(c->updateService(k, s).isOk());
  DestSpec w;
  w.weight = 9;
  REQUIRE(c->updateDest(k, DestKey{A("10.1.0.1"), 80}, w).isOk());
  std::string out = run("ipvsadm -Sn");
  CHECK(lines(out) == std::multiset<std::string>{"-A -t 10.0.0.1:80 -s wlc", "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 9"});
}
