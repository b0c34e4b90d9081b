// computeDesired: Kubernetes objects + node facts -> the desired IPVS table.

#include "controller/desired.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "test/controller/k8s_json.h"

namespace kipvs::controller {
namespace {

using testing::compute;
using testing::ep;
using testing::errorStrings;
using testing::list;
using testing::nodeA;
using testing::render;
using testing::service;
using testing::slice;
using testing::vipStrings;
using Lines = std::vector<std::string>;

ipvs::Address ip(const char* s) { return *ipvs::Address::parse(s); }

const std::string kWebSpec = R"("clusterIP":"10.96.0.10","ports":[{"name":"http","port":80,"targetPort":8080}])";
const std::string kHttpPort = R"([{"name":"http","port":8080,"protocol":"TCP"}])";

std::string arr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

// --- Cidr, schedulers ---------------------------------------------------------

TEST_CASE("Cidr: parse, contains, toString") {
  StatusOr<Cidr> c = Cidr::parse("10.0.0.7/8");
  REQUIRE(c.isOk());
  CHECK(c->toString() == "10.0.0.0/8");  // host bits dropped
  CHECK(c->contains(ip("10.255.1.1")));
  CHECK(!c->contains(ip("11.0.0.1")));
  CHECK(!c->contains(ip("::ffff:10.0.0.1")));  // other family
  StatusOr<Cidr> v6 = Cidr::parse("fd00:1::/33");
  REQUIRE(v6.isOk());
  CHECK(v6->contains(ip("fd00:1:7fff::1")));
  CHECK(!v6->contains(ip("fd00:1:8000::1")));
  CHECK(Cidr::parse("0.0.0.0/0")->contains(ip("203.0.113.1")));
  CHECK(Cidr::parse("198.51.100.10/32")->contains(ip("198.51.100.10")));
  CHECK(!Cidr::parse("198.51.100.10/32")->contains(ip("198.51.100.11")));
  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "fd00::/129", "10.0.0.0/-1", "10.0.0/8", "10.0.0.0/8x", "/8",
                          "10.0.0.0/"}) {
    CAPTURE(bad);
    StatusOr<Cidr> b = Cidr::parse(bad);
    CHECK(!b.isOk());
    CHECK(b.status().code() == Code::kInvalid);
  }
}

TEST_CASE("isKnownScheduler: the schedulers of net/netfilter/ipvs") {
  for (const char* s : {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}) {
    CAPTURE(s);
    CHECK(isKnownScheduler(s));
  }
  for (const char* s : {"", "RR", "random", "maglev", "wrr ", "sh-port"}) {
    CAPTURE(s);
    CHECK(!isKnownScheduler(s));
  }
}

// --- Virtual server kinds ------------------------------------------------------

TEST_CASE("desired: a ClusterIP Service") {
  Desired d = compute({service("default/web", kWebSpec),
                       slice("default/web-1", "web", "IPv4", kHttpPort, arr({ep("10.244.2.2"), ep("10.244.1.1")}))});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1"});
  CHECK(vipStrings(d) == Lines{"10.96.0.10"});
  CHECK(d.services == std::set<std::string>{"default/web"});
  CHECK(d.errors.empty());
  CHECK(d.notes.empty());
  REQUIRE(d.origins.size() == 1);
  const VsOrigin& o = d.origins.begin()->second;
  CHECK(o.service == "default/web");
  CHECK(o.portName == "http");
  CHECK(o.kind == "ClusterIP");
  // Normalized: default netmask, masq.
  const ipvs::ServiceState& s = d.table.services.begin()->second;
  CHECK(s.spec.netmask == 0xffffffffu);
  CHECK(s.dests.begin()->second.spec.fwd == ipvs::FwdMethod::kMasq);
}

TEST_CASE("desired: a Service without endpoints still gets its virtual server") {
  Desired d = compute({service("default/web", kWebSpec)});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->"});
  CHECK(d.services.count("default/web") == 1);
}

TEST_CASE("desired: LoadBalancer with externalIPs, NodePort and externalTrafficPolicy Local") {
  std::string spec = R"("type":"LoadBalancer","clusterIP":"10.96.0.10","externalTrafficPolicy":"Local",
      "healthCheckNodePort":32001,"externalIPs":["203.0.113.7"],
      "ports":[{"name":"http","port":80,"targetPort":8080,"nodePort":30080}])";
  std::string status = R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10","ipMode":"VIP"},
      {"hostname":"lb.example.com"},{"ip":"192.0.2.11","ipMode":"Proxy"}]})";
  std::string eps = arr({ep("10.244.1.1", R"("nodeName":"node-a")"), ep("10.244.2.2", R"("nodeName":"node-b")")});
  Desired d = compute({service("default/shop", spec, "", status), slice("default/shop-1", "shop", "IPv4", kHttpPort, eps)});
  CHECK(render(d) == Lines{
                         "TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1",  // ClusterIP: all
                         "TCP 192.0.2.10:80 rr -> 10.244.1.1:8080 w1",                      // LB: local only
                         "TCP 198.51.100.10:30080 rr -> 10.244.1.1:8080 w1",                // NodePort: local only
                         "TCP 203.0.113.7:80 rr -> 10.244.1.1:8080 w1",                     // externalIP: local only
                     });
  // Node IPs are not VIPs; the Proxy-mode ingress IP and the hostname make nothing.
  CHECK(vipStrings(d) == Lines{"10.96.0.10", "192.0.2.10", "203.0.113.7"});
  std::vector<std::string> kinds;
  for (const auto& [k, o] : d.origins) kinds.push_back(o.kind);
  CHECK(kinds == Lines{"ClusterIP", "LoadBalancer", "NodePort", "ExternalIP"});
}

TEST_CASE("desired: externalTrafficPolicy applies only to externally reachable Services") {
  std::string eps = arr({ep("10.244.1.1", R"("nodeName":"node-a")"), ep("10.244.2.2", R"("nodeName":"node-b")")});
  // ClusterIP type with externalIPs: reachable from outside, Local applies to the externalIP VS.
  Desired d = compute({service("default/a", R"("clusterIP":"10.96.0.10","externalTrafficPolicy":"Local",
                                "externalIPs":["203.0.113.7"],"ports":[{"name":"http","port":80}])"),
                       slice("default/a-1", "a", "IPv4", kHttpPort, eps)});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1",
                           "TCP 203.0.113.7:80 rr -> 10.244.1.1:8080 w1"});
  // NodePort with the default Cluster policy: all endpoints everywhere.
  Desired c = compute({service("default/a", R"("type":"NodePort","clusterIP":"10.96.0.10",
                                "ports":[{"name":"http","port":80,"nodePort":30001}])"),
                       slice("default/a-1", "a", "IPv4", kHttpPort, eps)});
  CHECK(render(c) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1",
                           "TCP 198.51.100.10:30001 rr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1"});
}

TEST_CASE("desired: NodePort virtual servers follow node IPs, nodePortCidrs and families") {
  std::string svc4 = service("default/np", R"("type":"NodePort","clusterIP":"10.96.0.10",
      "ports":[{"name":"http","port":80,"nodePort":30080},{"name":"none","port":81}])");
  std::string svc46 = service("default/np", R"("type":"NodePort","clusterIPs":["10.96.0.10","fd00::10"],
      "ports":[{"name":"http","port":80,"nodePort":30080}])");
  NodeFacts node = nodeA();
  node.nodeIps = {ip("198.51.100.10"), ip("10.0.0.5"), ip("0.0.0.0"), ip("2001:db8::10"), ip("::")};

  struct Case {
    const char* name;
    std::string svc;
    std::vector<std::string> cidrs;
    Lines nodePortVs;
  } cases[] = {
      {"all node IPs of the Service's family, never 0.0.0.0", svc4, {}, {"TCP 10.0.0.5:30080", "TCP 198.51.100.10:30080"}},
      {"filtered by nodePortCidrs", svc4, {"198.51.100.0/24"}, {"TCP 198.51.100.10:30080"}},
      {"CIDRs of another family only: this family's node IPs all count (kube-proxy's NodePortAddresses)", svc4,
       {"2001:db8::/64"}, {"TCP 10.0.0.5:30080", "TCP 198.51.100.10:30080"}},
      {"dual-stack, v4 CIDRs only: v6 node IPs all count", svc46, {"198.51.100.0/24"},
       {"TCP 198.51.100.10:30080", "TCP [2001:db8::10]:30080"}},
      {"dual-stack gets both families", svc46, {}, {"TCP 10.0.0.5:30080", "TCP 198.51.100.10:30080", "TCP [2001:db8::10]:30080"}},
      {"dual-stack filtered", svc46, {"2001:db8::/64", "10.0.0.0/8"}, {"TCP 10.0.0.5:30080", "TCP [2001:db8::10]:30080"}},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    node.nodePortCidrs.clear();
    for (const auto& c : tc.cidrs) node.nodePortCidrs.push_back(*Cidr::parse(c));
    Desired d = compute({tc.svc}, node);
    Lines got;
    for (const auto& [k, o] : d.origins) {
      if (o.kind == "NodePort") got.push_back(k.toString());
    }
    CHECK(got == tc.nodePortVs);
    for (const auto& a : node.nodeIps) CHECK(d.vips.count(a) == 0);  // node IPs are never VIPs
  }
}

TEST_CASE("desired: nodePort outside the node's range is reported, the rest of the Service goes on") {
  Desired d = compute({service("default/np", R"("type":"NodePort","clusterIP":"10.96.0.10",
      "ports":[{"name":"http","port":80,"nodePort":40000}])")});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->"});
  CHECK(errorStrings(d) ==
        Lines{"Service default/np: port \"http\": nodePort 40000 outside this node's range 30000-32767; NodePort "
              "virtual servers not programmed"});
}

// --- Services that produce nothing ---------------------------------------------

TEST_CASE("desired: headless, ExternalName and label-excluded Services produce nothing, silently") {
  std::string ports = R"("ports":[{"name":"http","port":80}])";
  NodeFacts named = nodeA();
  named.proxyName = "kipvs";
  struct Case {
    const char* name;
    std::string item;
    NodeFacts node;
    bool produces;
  } cases[] = {
      {"clusterIP None", service("d/s", R"("clusterIP":"None",)" + ports), nodeA(), false},
      {"clusterIPs [None]", service("d/s", R"("clusterIP":"None","clusterIPs":["None"],)" + ports), nodeA(), false},
      {"clusterIP empty", service("d/s", R"("clusterIP":"",)" + ports), nodeA(), false},
      {"no clusterIP at all", service("d/s", ports), nodeA(), false},
      {"ExternalName with a clusterIP",
       service("d/s", R"("type":"ExternalName","externalName":"x.example.com","clusterIP":"10.96.0.10",)" + ports),
       nodeA(), false},
      {"label headless", service("d/s", R"("clusterIP":"10.96.0.10",)" + ports,
                                 R"("labels":{"service.kubernetes.io/headless":""})"),
       nodeA(), false},
      {"another proxy's Service", service("d/s", R"("clusterIP":"10.96.0.10",)" + ports,
                                          R"("labels":{"service.kubernetes.io/service-proxy-name":"cilium"})"),
       named, false},
      {"a proxy-name label when we have none", service("d/s", R"("clusterIP":"10.96.0.10",)" + ports,
                                                      R"("labels":{"service.kubernetes.io/service-proxy-name":"kipvs"})"),
       nodeA(), false},
      {"our proxy name", service("d/s", R"("clusterIP":"10.96.0.10",)" + ports,
                                 R"("labels":{"service.kubernetes.io/service-proxy-name":"kipvs"})"),
       named, true},
      {"no label, named proxy", service("d/s", R"("clusterIP":"10.96.0.10",)" + ports), named, true},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({tc.item, slice("d/s-1", "s", "IPv4", kHttpPort, arr({ep("10.244.1.1")}))}, tc.node);
    CHECK(d.table.services.size() == (tc.produces ? 1u : 0u));
    CHECK(d.vips.size() == (tc.produces ? 1u : 0u));
    CHECK(d.services.size() == (tc.produces ? 1u : 0u));
    CHECK(d.errors.empty());
  }
}

TEST_CASE("desired: EndpointSlices labelled headless or for another proxy are not read, as kube-proxy's informers") {
  const std::string svc = service("d/s", R"("clusterIP":"10.96.0.10","ports":[{"name":"http","port":80}])");
  auto labelled = [](const std::string& label) {
    std::string sl = slice("d/s-1", "s", "IPv4", kHttpPort, arr({ep("10.244.1.1")}));
    const std::string at = R"("kubernetes.io/service-name":"s")";
    return sl.replace(sl.find(at), at.size(), at + "," + label);
  };
  NodeFacts named = nodeA();
  named.proxyName = "kipvs";
  struct Case {
    const char* name;
    std::string label;
    NodeFacts node;
    std::string dests;
  } cases[] = {
      {"headless", R"("service.kubernetes.io/headless":"")", nodeA(), ""},
      {"another proxy's", R"("service.kubernetes.io/service-proxy-name":"cilium")", named, ""},
      {"a proxy name when we have none", R"("service.kubernetes.io/service-proxy-name":"kipvs")", nodeA(), ""},
      {"our proxy name", R"("service.kubernetes.io/service-proxy-name":"kipvs")", named, " 10.244.1.1:8080 w1"},
      {"some other label", R"("app":"web")", nodeA(), " 10.244.1.1:8080 w1"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    CHECK(render(compute({svc, labelled(tc.label)}, tc.node)) == Lines{"TCP 10.96.0.10:80 rr ->" + tc.dests});
  }
}

// --- Ports and endpoints ---------------------------------------------------------

TEST_CASE("desired: ports match by name and protocol; the real port comes from each slice") {
  std::string svc = service("default/web", R"("clusterIP":"10.96.0.10","ports":[
      {"name":"http","port":80,"targetPort":"http"},{"name":"metrics","port":9090}])");
  // A rollout: the new pods listen on 8081, in their own slice.
  std::string s1 = slice("default/web-old", "web", "IPv4", R"([{"name":"http","port":8080},{"name":"metrics","port":9090}])",
                         arr({ep("10.244.1.1")}));
  std::string s2 = slice("default/web-new", "web", "IPv4", R"([{"name":"http","port":8081}])", arr({ep("10.244.1.2")}));
  Desired d = compute({svc, s1, s2});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1, 10.244.1.2:8081 w1",
                           "TCP 10.96.0.10:9090 rr -> 10.244.1.1:9090 w1"});
}

TEST_CASE("desired: same port name, different protocols") {
  std::string svc = service("kube-system/dns", R"("clusterIP":"10.96.0.10","ports":[
      {"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"},
      {"name":"sctp","port":99,"protocol":"SCTP"}])");
  std::string s = slice("kube-system/dns-1", "dns", "IPv4",
                        R"([{"name":"dns","port":5353,"protocol":"UDP"},{"name":"dns-tcp","port":5354,"protocol":"TCP"},
                            {"name":"dns","port":9999,"protocol":"TCP"},{"name":"sctp","port":9900,"protocol":"SCTP"}])",
                        arr({ep("10.244.1.1")}));
  Desired d = compute({svc, s});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:53 rr -> 10.244.1.1:5354 w1", "UDP 10.96.0.10:53 rr -> 10.244.1.1:5353 w1",
                           "SCTP 10.96.0.10:99 rr -> 10.244.1.1:9900 w1"});
}

TEST_CASE("desired: unnamed ports; slice ports with nil name or nil/0 port are ignored") {
  std::string svc = service("default/one", R"("clusterIP":"10.96.0.10","ports":[{"port":80}])");
  std::string s = slice("default/one-1", "one", "IPv4",
                        R"([{"name":"","port":8080},{"port":8081},{"name":null,"port":8082},{"name":"","port":0},
                            {"name":"","port":null},{"name":"x","port":8083}])",
                        arr({ep("10.244.1.1")}));
  Desired d = compute({svc, s});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
  CHECK(d.errors.empty());
}

TEST_CASE("desired: each VIP family gets the endpoints of its family; FQDN slices are ignored") {
  std::string dual = service("default/web", R"("clusterIPs":["10.96.0.10","fd00::10"],"ipFamilies":["IPv4","IPv6"],
      "ports":[{"name":"http","port":80}])");
  std::string v4 = slice("default/web-v4", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1")}));
  std::string v6 = slice("default/web-v6", "web", "IPv6", kHttpPort, arr({ep("fd00:244::1")}));
  std::string fqdn = slice("default/web-fqdn", "web", "FQDN", kHttpPort, arr({ep("db.example.com")}));
  Desired d = compute({dual, v4, v6, fqdn});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1", "TCP [fd00::10]:80 rr -> [fd00:244::1]:8080 w1"});
  CHECK(vipStrings(d) == Lines{"10.96.0.10", "fd00::10"});
  CHECK(d.errors.empty());
  CHECK(d.table.services.rbegin()->second.spec.netmask == 128u);

  // Single-stack IPv4: the IPv6 slice and an IPv6 externalIP play no part.
  std::string single = service("default/web", R"("clusterIP":"10.96.0.10","externalIPs":["2001:db8::7"],
      "ports":[{"name":"http","port":80}])");
  Desired s = compute({single, v4, v6});
  CHECK(render(s) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
  CHECK(s.notes == Lines{"Service default/web: 2001:db8::7 ignored: the Service has no ClusterIP of its family"});
}

// kube-proxy reads externalIPs, LB ingress IPs and endpoint
// addresses with netutils.ParseIPSloppy (proxy/util MapIPsByIPFamily,
// service.go newBaseServiceInfo, endpointslicecache.go addEndpoints), so the
// legacy forms the API server still accepts in these fields (leading zeros;
// IPv4-mapped IPv6, an IPv4 address by To4()) are programmed, and an unusable
// externalIP is skipped, never the whole Service (kipvs: an error naming
// the Service, as for any invalid object).
TEST_CASE("desired: legacy IP forms the API server keeps (leading zeros, IPv4-mapped) are read as kube-proxy reads them") {
  std::string legacy = service("default/legacy", R"("clusterIP":"10.96.0.30","clusterIPs":["10.96.0.30"],
      "ipFamilies":["IPv4"],"externalIPs":["192.168.001.010"],"ports":[{"name":"http","port":80}])");
  std::string eps = slice("default/legacy-1", "legacy", "IPv4", kHttpPort,
                          arr({ep("10.244.1.1"), ep("10.244.001.002")}));
  Desired d = compute({legacy, eps});
  auto join = [](const Lines& l) { std::string o; for (const auto& x : l) o += "\n    " + x; return o; };
  INFO("render: ", join(render(d)), "\n  errors: ", join(errorStrings(d)));
  // kube-proxy: ClusterIP and externalIP 192.168.1.10, both with 10.244.1.1 and 10.244.1.2.
  CHECK(render(d) == Lines{"TCP 10.96.0.30:80 rr -> 10.244.1.1:8080 w1, 10.244.1.2:8080 w1",
                           "TCP 192.168.1.10:80 rr -> 10.244.1.1:8080 w1, 10.244.1.2:8080 w1"});
  CHECK(d.errors.empty());

  // An IPv4-mapped externalIP / LB IP is IPv4 to kube-proxy (GetIPFamilyFromIP: To4() != nil).
  std::string mapped = service("default/mapped", R"("type":"LoadBalancer","clusterIP":"10.96.0.31",
      "clusterIPs":["10.96.0.31"],"ipFamilies":["IPv4"],"externalIPs":["::ffff:203.0.113.31"],
      "ports":[{"name":"http","port":80}])", "", R"("loadBalancer":{"ingress":[{"ip":"::ffff:192.0.2.31"}]})");
  Desired m = compute({mapped});
  INFO("render: ", join(render(m)), "\n  notes: ", join(m.notes));
  CHECK(render(m) == Lines{"TCP 10.96.0.31:80 rr ->", "TCP 192.0.2.31:80 rr ->", "TCP 203.0.113.31:80 rr ->"});
  CHECK(m.notes.empty());
}

// Dual-stack with IPv6 primary, checked against kube-proxy (NewDualStackProxier: one proxier per family).
TEST_CASE("desired: dual-stack, IPv6 primary: ETP Local and affinity per family, netmask 128 for IPv6") {
  std::string svc = service("default/shop", R"("type":"LoadBalancer","ipFamilies":["IPv6","IPv4"],
      "clusterIP":"fd00:10:96::10","clusterIPs":["fd00:10:96::10","10.96.0.10"],
      "externalIPs":["203.0.113.7","2001:db8:7::7"],"externalTrafficPolicy":"Local","healthCheckNodePort":32001,
      "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":600}},
      "ports":[{"name":"http","port":80,"nodePort":30080}])", "",
      R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"},{"ip":"2001:db8:10::10"}]})");
  std::string v4 = slice("default/shop-v4", "shop", "IPv4", kHttpPort,
                         arr({ep("10.244.1.1", R"("nodeName":"node-a")"), ep("10.244.2.2", R"("nodeName":"node-b")")}));
  std::string v6 = slice("default/shop-v6", "shop", "IPv6", kHttpPort,
                         arr({ep("fd00:244:1::1", R"("nodeName":"node-a")"), ep("fd00:244:2::2", R"("nodeName":"node-b")")}));
  NodeFacts node = nodeA();
  node.nodeIps = {ip("198.51.100.10"), ip("2001:db8::10")};
  Desired d = compute({svc, v4, v6}, node);
  CHECK(render(d) == Lines{
                         "TCP 10.96.0.10:80 rr flags=0x1 timeout=600 -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1",
                         "TCP 192.0.2.10:80 rr flags=0x1 timeout=600 -> 10.244.1.1:8080 w1",
                         "TCP 198.51.100.10:30080 rr flags=0x1 timeout=600 -> 10.244.1.1:8080 w1",
                         "TCP 203.0.113.7:80 rr flags=0x1 timeout=600 -> 10.244.1.1:8080 w1",
                         "TCP [2001:db8::10]:30080 rr flags=0x1 timeout=600 -> [fd00:244:1::1]:8080 w1",
                         "TCP [2001:db8:7::7]:80 rr flags=0x1 timeout=600 -> [fd00:244:1::1]:8080 w1",
                         "TCP [2001:db8:10::10]:80 rr flags=0x1 timeout=600 -> [fd00:244:1::1]:8080 w1",
                         "TCP [fd00:10:96::10]:80 rr flags=0x1 timeout=600 -> [fd00:244:1::1]:8080 w1, [fd00:244:2::2]:8080 w1",
                     });
  for (const auto& [k, s] : d.table.services) CHECK(s.spec.netmask == (k.family == ipvs::Family::kV6 ? 128u : 0xffffffffu));
  CHECK(d.errors.empty());
  CHECK(d.notes.empty());
}

TEST_CASE("desired: parseKubernetesIp takes what ParseIPSloppy + To4 take, and no more") {
  auto v = [](const char* t) {
    StatusOr<ipvs::Address> a = parseKubernetesIp(t);
    return a ? a->toString() + (a->isV4() ? " v4" : " v6") : std::string("error");
  };
  CHECK(v("10.0.0.1") == "10.0.0.1 v4");
  CHECK(v("010.096.000.010") == "10.96.0.10 v4");  // decimal, not octal
  CHECK(v("0000000010.0.0.1") == "10.0.0.1 v4");
  CHECK(v("::ffff:10.0.0.1") == "10.0.0.1 v4");
  CHECK(v("::FFFF:010.000.000.001") == "10.0.0.1 v4");
  CHECK(v("::ffff:a00:1") == "10.0.0.1 v4");
  CHECK(v("fd00::1") == "fd00::1 v6");
  CHECK(v("::1") == "::1 v6");
  for (const char* bad : {"", "256.0.0.1", "1.2.3", "1.2.3.4.5", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "0x0a.0.0.1", "::ffff:",
                          "::ffff:1.2.3.256", "::fffff:1.2.3.4", "10.0.0.1/32", "None"}) {
    CAPTURE(bad);
    CHECK(v(bad) == "error");
  }
}

TEST_CASE("desired: slices are joined by namespace and service-name label") {
  std::string other = slice("other/web-1", "web", "IPv4", kHttpPort, arr({ep("10.244.9.9")}));
  std::string unlabeled = R"({"kind":"EndpointSlice","metadata":{"namespace":"default","name":"stray"},
      "addressType":"IPv4","ports":[{"name":"http","port":8080}],"endpoints":[{"addresses":["10.244.8.8"]}]})";
  std::string mine = slice("default/x-1", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1")}));
  Desired d = compute({service("default/web", kWebSpec), other, unlabeled, mine});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
  CHECK(d.errors.empty());
}

TEST_CASE("desired: endpoint conditions, and the serving-terminating fallback") {
  std::string ready = ep("10.244.1.1", R"("conditions":{})");  // all nil: ready
  std::string servTerm = ep("10.244.1.2", R"("conditions":{"ready":false,"serving":true,"terminating":true})");
  std::string termNotServing = ep("10.244.1.3", R"("conditions":{"ready":false,"serving":false,"terminating":true})");
  std::string notReady = ep("10.244.1.4", R"("conditions":{"ready":false})");
  std::string nilServingTerm = ep("10.244.1.5", R"("conditions":{"ready":false,"terminating":true})");
  std::string readyTerm = ep("10.244.1.6", R"("conditions":{"ready":true,"terminating":true})");
  struct Case {
    const char* name;
    std::vector<std::string> eps;
    std::string dests;
  } cases[] = {
      {"ready ones only when any is ready", {ready, servTerm, termNotServing, notReady}, " 10.244.1.1:8080 w1"},
      {"ready wins even when also terminating", {readyTerm, servTerm}, " 10.244.1.6:8080 w1"},
      {"no ready: serving and terminating ones", {servTerm, termNotServing, notReady, nilServingTerm},
       " 10.244.1.2:8080 w1, 10.244.1.5:8080 w1"},
      {"nothing usable", {termNotServing, notReady}, ""},
      {"endpoints without addresses are ignored", {R"({"addresses":[]})", R"({"conditions":{}})"}, ""},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({service("default/web", kWebSpec), slice("default/web-1", "web", "IPv4", kHttpPort, arr(tc.eps))});
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->" + tc.dests});
  }
}

TEST_CASE("desired: an endpoint in two slices appears once; the ready (or local) copy wins") {
  std::string a = slice("default/web-a", "web", "IPv4", kHttpPort,
                        arr({ep("10.244.1.1", R"("conditions":{"ready":false,"serving":true,"terminating":true})"),
                             ep("10.244.1.2", R"("conditions":{"ready":false,"serving":true,"terminating":true})")}));
  std::string b = slice("default/web-b", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1")}));
  Desired d = compute({service("default/web", kWebSpec), a, b});
  // 10.244.1.1 is ready in web-b: the Service has a ready endpoint, so the
  // terminating 10.244.1.2 is not used.
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});

  // With internalTrafficPolicy Local, the copy that says "on this node" counts.
  std::string itp = R"("clusterIP":"10.96.0.10","internalTrafficPolicy":"Local","ports":[{"name":"http","port":80}])";
  std::string c = slice("default/web-c", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1", R"("nodeName":"node-b")")}));
  std::string e = slice("default/web-d", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1", R"("nodeName":"node-a")")}));
  CHECK(render(compute({service("default/web", itp), c, e})) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
}

TEST_CASE("desired: internalTrafficPolicy Local, with its own fallback") {
  std::string spec = R"("clusterIP":"10.96.0.10","internalTrafficPolicy":"Local","ports":[{"name":"http","port":80}])";
  std::string localReady = ep("10.244.1.1", R"("nodeName":"node-a")");
  std::string remoteReady = ep("10.244.2.2", R"("nodeName":"node-b")");
  std::string localTerm = ep("10.244.1.3", R"("nodeName":"node-a","conditions":{"ready":false,"terminating":true})");
  std::string remoteTerm = ep("10.244.2.4", R"("nodeName":"node-b","conditions":{"ready":false,"terminating":true})");
  struct Case {
    const char* name;
    std::vector<std::string> eps;
    std::string dests;
  } cases[] = {
      {"local ready only", {localReady, remoteReady, localTerm}, " 10.244.1.1:8080 w1"},
      {"no local ready: local serving-terminating, not remote ready", {remoteReady, localTerm, remoteTerm},
       " 10.244.1.3:8080 w1"},
      {"nothing local: no destinations", {remoteReady, remoteTerm}, ""},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({service("default/web", spec), slice("default/web-1", "web", "IPv4", kHttpPort, arr(tc.eps))});
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->" + tc.dests});
  }
  // A node without a name has no local endpoints.
  NodeFacts anon = nodeA();
  anon.nodeName.clear();
  Desired d = compute({service("default/web", spec),
                       slice("default/web-1", "web", "IPv4", kHttpPort, arr({ep("10.244.1.1", R"("nodeName":"")")}))},
                      anon);
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->"});
}

TEST_CASE("desired: externalTrafficPolicy Local falls back to local serving-terminating endpoints") {
  std::string spec = R"("type":"NodePort","clusterIP":"10.96.0.10","externalTrafficPolicy":"Local",
      "ports":[{"name":"http","port":80,"nodePort":30080}])";
  std::string eps = arr({ep("10.244.2.2", R"("nodeName":"node-b")"),
                         ep("10.244.1.3", R"("nodeName":"node-a","conditions":{"ready":false,"terminating":true})")});
  Desired d = compute({service("default/web", spec), slice("default/web-1", "web", "IPv4", kHttpPort, eps)});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.2.2:8080 w1", "TCP 198.51.100.10:30080 rr -> 10.244.1.3:8080 w1"});
}

TEST_CASE("desired: Local policy with no local endpoint takes the cluster's, where the port uses them (kube-proxy IPVS, #97081)") {
  std::string eps = arr({ep("10.244.2.2", R"("nodeName":"node-b")"),
                         ep("10.244.3.3", R"("nodeName":"node-c","conditions":{"ready":false,"terminating":true})")});
  auto desiredFor = [&](const std::string& spec, const std::string& status = "") {
    return render(
        compute({service("default/web", spec, "", status), slice("default/web-1", "web", "IPv4", kHttpPort, eps)}));
  };
  // externalTrafficPolicy Local: every externally reachable virtual server.
  CHECK(desiredFor(R"("type":"LoadBalancer","clusterIP":"10.96.0.10","externalTrafficPolicy":"Local",
      "externalIPs":["203.0.113.7"],"ports":[{"name":"http","port":80,"nodePort":30080}])",
                   R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]})") ==
        Lines{"TCP 10.96.0.10:80 rr -> 10.244.2.2:8080 w1", "TCP 192.0.2.10:80 rr -> 10.244.2.2:8080 w1",
              "TCP 198.51.100.10:30080 rr -> 10.244.2.2:8080 w1", "TCP 203.0.113.7:80 rr -> 10.244.2.2:8080 w1"});
  // internalTrafficPolicy Local on a port reachable from outside: the ClusterIP too.
  CHECK(desiredFor(R"("type":"NodePort","clusterIP":"10.96.0.10","internalTrafficPolicy":"Local",
      "ports":[{"name":"http","port":80,"nodePort":30080}])") ==
        Lines{"TCP 10.96.0.10:80 rr -> 10.244.2.2:8080 w1", "TCP 198.51.100.10:30080 rr -> 10.244.2.2:8080 w1"});
  // ... but not on a port only the ClusterIP reaches.
  CHECK(desiredFor(R"("clusterIP":"10.96.0.10","internalTrafficPolicy":"Local","ports":[{"name":"http","port":80}])") ==
        Lines{"TCP 10.96.0.10:80 rr ->"});
  // The cluster's own fallback holds: no ready endpoint anywhere, the serving-terminating ones.
  eps = arr({ep("10.244.3.3", R"("nodeName":"node-c","conditions":{"ready":false,"terminating":true})")});
  CHECK(desiredFor(R"("type":"NodePort","clusterIP":"10.96.0.10","externalTrafficPolicy":"Local",
      "ports":[{"name":"http","port":80,"nodePort":30080}])") ==
        Lines{"TCP 10.96.0.10:80 rr -> 10.244.3.3:8080 w1", "TCP 198.51.100.10:30080 rr -> 10.244.3.3:8080 w1"});
}

// --- Topology -------------------------------------------------------------------

TEST_CASE("desired: topology hints, as kube-proxy's topology.go") {
  auto hinted = [](const char* addr, const char* zones, const char* nodes = nullptr, const char* extra = nullptr) {
    std::string h = R"("hints":{"forZones":)" + std::string(zones);
    if (nodes) h += R"(,"forNodes":)" + std::string(nodes);
    h += "}";
    if (extra) h += "," + std::string(extra);
    return ep(addr, h);
  };
  const char* za = R"([{"name":"zone-a"}])";
  const char* zb = R"([{"name":"zone-b"}])";
  const char* zc = R"([{"name":"zone-c"}])";
  const char* na = R"([{"name":"node-a"}])";
  const char* nb = R"([{"name":"node-b"}])";
  const char* term = R"("conditions":{"ready":false,"serving":true,"terminating":true})";
  std::string itp = R"("clusterIP":"10.96.0.10","internalTrafficPolicy":"Local","ports":[{"name":"http","port":80}])";
  NodeFacts noZone = nodeA();
  noZone.zone.clear();

  struct Case {
    const char* name;
    std::string spec;
    std::vector<std::string> eps;
    NodeFacts node;
    std::string dests;
  } cases[] = {
      {"zone hints: keep those for our zone", kWebSpec,
       {hinted("10.244.1.1", za), hinted("10.244.2.2", zb), hinted("10.244.1.3", za)}, nodeA(),
       " 10.244.1.1:8080 w1, 10.244.1.3:8080 w1"},
      {"no endpoint hinted for our zone: all", kWebSpec, {hinted("10.244.2.2", zb), hinted("10.244.3.3", zc)}, nodeA(),
       " 10.244.2.2:8080 w1, 10.244.3.3:8080 w1"},
      {"a ready endpoint without hints: all", kWebSpec, {hinted("10.244.1.1", za), ep("10.244.2.2")}, nodeA(),
       " 10.244.1.1:8080 w1, 10.244.2.2:8080 w1"},
      {"a non-ready endpoint without hints does not matter", kWebSpec,
       {hinted("10.244.1.1", za), hinted("10.244.2.2", zb), ep("10.244.3.3", R"("conditions":{"ready":false})")},
       nodeA(), " 10.244.1.1:8080 w1"},
      {"node hints win over zone hints", kWebSpec,
       {hinted("10.244.1.1", za, nb), hinted("10.244.1.3", za, na), hinted("10.244.2.2", zb, nb)}, nodeA(),
       " 10.244.1.3:8080 w1"},
      {"node hints incomplete: zone hints", kWebSpec,
       {hinted("10.244.1.1", za), hinted("10.244.1.3", za, na), hinted("10.244.2.2", zb, nb)}, nodeA(),
       " 10.244.1.1:8080 w1, 10.244.1.3:8080 w1"},
      {"node hints for other nodes only: zone hints", kWebSpec,
       {hinted("10.244.1.1", za, nb), hinted("10.244.2.2", zb, nb)}, nodeA(), " 10.244.1.1:8080 w1"},
      {"node without a zone: all", kWebSpec, {hinted("10.244.1.1", za), hinted("10.244.2.2", zb)}, noZone,
       " 10.244.1.1:8080 w1, 10.244.2.2:8080 w1"},
      {"serving-terminating fallback ignores hints", kWebSpec,
       {hinted("10.244.1.1", za, nullptr, term), hinted("10.244.2.2", zb, nullptr, term)}, nodeA(),
       " 10.244.1.1:8080 w1, 10.244.2.2:8080 w1"},
      {"Local policy ignores hints", itp,
       {hinted("10.244.1.1", zb, nullptr, R"("nodeName":"node-a")"), hinted("10.244.2.2", za, nullptr, R"("nodeName":"node-b")")},
       nodeA(), " 10.244.1.1:8080 w1"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({service("default/web", tc.spec), slice("default/web-1", "web", "IPv4", kHttpPort, arr(tc.eps))},
                        tc.node);
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->" + tc.dests});
  }
}

// --- kipvs annotations ------------------------------------------------------------

TEST_CASE("desired: zone weights") {
  std::string eps = arr({ep("10.244.1.1", R"("zone":"zone-a")"), ep("10.244.2.2", R"("zone":"zone-b")"),
                         ep("10.244.3.3")});
  auto svc = [](const std::string& annotations) {
    return service("default/web", kWebSpec, R"("annotations":{)" + annotations + "}");
  };
  NodeFacts noZone = nodeA();
  noZone.zone.clear();
  NodeFacts zoneC = nodeA();
  zoneC.zone = "zone-c";  // no endpoint there
  struct Case {
    const char* name;
    std::string annotations;
    NodeFacts node;
    std::string line;
    Lines notes;
  } cases[] = {
      {"same=4,other=1 with wrr", R"("kipvs.io/zone-weights":"same=4,other=1","kipvs.io/scheduler":"wrr")", nodeA(),
       "TCP 10.96.0.10:80 wrr -> 10.244.1.1:8080 w4, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1", {}},
      {"spaces and a missing key (weight 1)", R"("kipvs.io/zone-weights":" same = 3 ","kipvs.io/scheduler":"wlc")",
       nodeA(), "TCP 10.96.0.10:80 wlc -> 10.244.1.1:8080 w3, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1", {}},
      {"other=0 quiesces remote endpoints", R"("kipvs.io/zone-weights":"other=0","kipvs.io/scheduler":"sh")", nodeA(),
       "TCP 10.96.0.10:80 sh -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w0, 10.244.3.3:8080 w0", {}},
      {"rr ignores weights: a note", R"("kipvs.io/zone-weights":"same=4,other=1")", nodeA(),
       "TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w4, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1",
       {"Service default/web: kipvs.io/zone-weights has no effect: scheduler rr ignores weights (use wrr, wlc, sh "
        "or mh)"}},
      {"fo gives weight another meaning: a note", R"("kipvs.io/zone-weights":"same=2","kipvs.io/scheduler":"fo")",
       nodeA(), "TCP 10.96.0.10:80 fo -> 10.244.1.1:8080 w2, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1",
       {"Service default/web: kipvs.io/zone-weights with scheduler fo: all traffic goes to the heaviest endpoint"}},
      {"other=0 and no endpoint in this zone: equal weights, never all 0",
       R"("kipvs.io/zone-weights":"other=0","kipvs.io/scheduler":"wrr")", zoneC,
       "TCP 10.96.0.10:80 wrr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1", {}},
      {"same=0, other=0: equal weights", R"("kipvs.io/zone-weights":"same=0,other=0","kipvs.io/scheduler":"wrr")",
       nodeA(), "TCP 10.96.0.10:80 wrr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1", {}},
      {"other=0 on a node without a zone: equal weights",
       R"("kipvs.io/zone-weights":"same=4,other=0","kipvs.io/scheduler":"wrr")", noZone,
       "TCP 10.96.0.10:80 wrr -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1",
       {"Service default/web: kipvs.io/zone-weights: this node has no zone, every endpoint gets the \"other\" "
        "weight"}},
      {"ovf without zone weights: a note on its per-endpoint limit", R"("kipvs.io/scheduler":"ovf")", nodeA(),
       "TCP 10.96.0.10:80 ovf -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1",
       {"Service default/web: scheduler ovf: weights act as per-endpoint connection limits, and every endpoint has "
        "weight 1: about one active connection each, new ones beyond are dropped"}},
      {"fo without zone weights: a note", R"("kipvs.io/scheduler":"fo")", nodeA(),
       "TCP 10.96.0.10:80 fo -> 10.244.1.1:8080 w1, 10.244.2.2:8080 w1, 10.244.3.3:8080 w1",
       {"Service default/web: scheduler fo: all traffic goes to the heaviest endpoint"}},
      {"node without a zone: all get other", R"("kipvs.io/zone-weights":"same=4,other=2","kipvs.io/scheduler":"wrr")",
       noZone, "TCP 10.96.0.10:80 wrr -> 10.244.1.1:8080 w2, 10.244.2.2:8080 w2, 10.244.3.3:8080 w2",
       {"Service default/web: kipvs.io/zone-weights: this node has no zone, every endpoint gets the \"other\" "
        "weight"}},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({svc(tc.annotations), slice("default/web-1", "web", "IPv4", kHttpPort, eps)}, tc.node);
    CHECK(render(d) == Lines{tc.line});
    CHECK(d.notes == tc.notes);
    CHECK(d.errors.empty());
  }
}

TEST_CASE("desired: scheduler annotation, node default and scheduler flags") {
  struct Case {
    const char* name;
    std::string annotations;
    std::string defaultScheduler;
    std::string line;  // or the error
    bool error;
  } cases[] = {
      {"node default", "", "wlc", "TCP 10.96.0.10:80 wlc ->", false},
      {"annotation overrides; mh hashes the source port by default, as kube-proxy", R"("kipvs.io/scheduler":"mh")", "wlc",
       "TCP 10.96.0.10:80 mh flags=0x10 ->", false},
      {"mh as the node default: mh-port too", "", "mh", "TCP 10.96.0.10:80 mh flags=0x10 ->", false},
      {"mh with the flags annotation empty: no flags", R"("kipvs.io/scheduler":"mh","kipvs.io/scheduler-flags":"")", "rr",
       "TCP 10.96.0.10:80 mh ->", false},
      {"sh flags", R"("kipvs.io/scheduler":"sh","kipvs.io/scheduler-flags":"sh-fallback, sh-port")", "rr",
       "TCP 10.96.0.10:80 sh flags=0x18 ->", false},
      {"mh-port", R"("kipvs.io/scheduler":"mh","kipvs.io/scheduler-flags":"mh-port")", "rr",
       "TCP 10.96.0.10:80 mh flags=0x10 ->", false},
      {"mh-fallback on the node default", R"("kipvs.io/scheduler-flags":"mh-fallback")", "mh",
       "TCP 10.96.0.10:80 mh flags=0x8 ->", false},
      {"unknown scheduler", R"("kipvs.io/scheduler":"maglev")", "rr",
       "Service default/web: unknown IPVS scheduler \"maglev\" (annotation kipvs.io/scheduler)", true},
      {"unknown node default", "", "bogus", "Service default/web: unknown IPVS scheduler \"bogus\" (node default)", true},
      {"flag of another family", R"("kipvs.io/scheduler":"mh","kipvs.io/scheduler-flags":"sh-port")", "rr",
       "Service default/web: annotation kipvs.io/scheduler-flags: flag \"sh-port\" needs scheduler sh, not mh", true},
      {"flag without its scheduler", R"("kipvs.io/scheduler-flags":"mh-port")", "rr",
       "Service default/web: annotation kipvs.io/scheduler-flags: flag \"mh-port\" needs scheduler mh, not rr", true},
      {"unknown flag", R"("kipvs.io/scheduler":"sh","kipvs.io/scheduler-flags":"sh-magic")", "rr",
       "Service default/web: annotation kipvs.io/scheduler-flags: unknown flag \"sh-magic\" (want sh-fallback, "
       "sh-port, mh-fallback, mh-port)",
       true},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    NodeFacts node = nodeA();
    node.defaultScheduler = tc.defaultScheduler;
    std::string meta = tc.annotations.empty() ? "" : R"("annotations":{)" + tc.annotations + "}";
    Desired d = compute({service("default/web", kWebSpec, meta)}, node);
    if (tc.error) {
      CHECK(render(d).empty());
      CHECK(errorStrings(d) == Lines{tc.line});
      CHECK(d.services.empty());
    } else {
      CHECK(render(d) == Lines{tc.line});
      CHECK(d.errors.empty());
    }
  }
}

TEST_CASE("desired: ClientIP session affinity") {
  struct Case {
    const char* name;
    std::string spec;
    std::string result;
    bool error;
  } cases[] = {
      {"default timeout", R"("sessionAffinity":"ClientIP")", "TCP 10.96.0.10:80 rr flags=0x1 timeout=10800 ->", false},
      {"explicit timeout", R"("sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}})",
       "TCP 10.96.0.10:80 rr flags=0x1 timeout=60 ->", false},
      {"maximum", R"("sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":86400}})",
       "TCP 10.96.0.10:80 rr flags=0x1 timeout=86400 ->", false},
      {"None ignores the config", R"("sessionAffinity":"None","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}})",
       "TCP 10.96.0.10:80 rr ->", false},
      {"zero", R"("sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}})",
       "Service default/web: sessionAffinityConfig.clientIP.timeoutSeconds 0 out of range 1..86400", true},
      {"too long", R"("sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":86401}})",
       "Service default/web: sessionAffinityConfig.clientIP.timeoutSeconds 86401 out of range 1..86400", true},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    Desired d = compute({service("default/web", kWebSpec + "," + tc.spec)});
    if (tc.error) {
      CHECK(render(d).empty());
      CHECK(errorStrings(d) == Lines{tc.result});
    } else {
      CHECK(render(d) == Lines{tc.result});
      CHECK(d.errors.empty());
      CHECK(d.table.services.begin()->second.spec.netmask == 0xffffffffu);
    }
  }
}

TEST_CASE("desired: an empty protocol is TCP, as the API server defaults it") {
  Desired d = compute({service("default/web", R"("clusterIP":"10.96.0.10","ports":[{"name":"http","port":80,"protocol":""}])"),
                       slice("default/web-1", "web", "IPv4", R"([{"name":"http","port":8080,"protocol":""}])",
                             arr({ep("10.244.1.1")}))});
  CHECK(d.errors.empty());
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
}

TEST_CASE("desired: the default node name is the host name as kubelet takes it") {
  CHECK(kubeletNodeName("Node-A") == "node-a");
  CHECK(kubeletNodeName(" worker-1.Example.com\n") == "worker-1.example.com");
  CHECK(kubeletNodeName("") == "");
}

// --- Invalid input ------------------------------------------------------------------

TEST_CASE("desired: an invalid Service is reported by name and never blocks the others") {
  struct Case {
    std::string spec;
    std::string status;
    std::string message;
  } cases[] = {
      {R"("clusterIP":"10.96.0.300","ports":[{"name":"http","port":80}])", "",
       "clusterIP \"10.96.0.300\" is not an IP address"},
      {R"("clusterIP":"0.0.0.0","ports":[{"name":"http","port":80}])", "", "clusterIP \"0.0.0.0\" is not an IP address"},
      {R"("clusterIPs":["10.96.0.20","10.96.0.21"],"ports":[{"name":"http","port":80}])", "",
       "two clusterIPs of the same family"},
      {R"("clusterIP":"10.96.0.20","ports":[{"name":"http","port":0}])", "", "port \"http\": port 0 out of range 1..65535"},
      {R"("clusterIP":"10.96.0.20","ports":[{"port":70000}])", "", "port 0: port 70000 out of range 1..65535"},
      {R"("clusterIP":"10.96.0.20","ports":[{"name":"http","port":80,"protocol":"ICMP"}])", "",
       "port \"http\": unknown protocol \"ICMP\""},
      {R"("clusterIP":"10.96.0.20","ports":[{"name":"http","port":80,"protocol":"tcp"}])", "",
       "port \"http\": unknown protocol \"tcp\""},
      {R"("clusterIP":"10.96.0.20","ports":[{"name":"http","port":80,"nodePort":70000}])", "",
       "port \"http\": nodePort 70000 out of range 0..65535"},
      {R"("clusterIP":"10.96.0.20","ports":[{"name":"a","port":80},{"name":"b","port":80}])", "",
       "port \"b\": duplicate TCP port 80"},
      {R"("clusterIP":"10.96.0.20","externalIPs":["bogus"],"ports":[{"name":"http","port":80}])", "",
       "externalIP \"bogus\" is not an IP address"},
      {R"("type":"LoadBalancer","clusterIP":"10.96.0.20","ports":[{"name":"http","port":80}])",
       R"("loadBalancer":{"ingress":[{"ip":"1.2.3"}]})",
       "status.loadBalancer.ingress ip \"1.2.3\" is not an IP address"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.spec);
    Desired d = compute({service("default/bad", tc.spec, "", tc.status), service("default/good", kWebSpec),
                         service("zzz/also-good", R"("clusterIP":"10.96.0.11","ports":[{"port":80}])")});
    CHECK(errorStrings(d) == Lines{"Service default/bad: " + tc.message});
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->", "TCP 10.96.0.11:80 rr ->"});
    CHECK(d.services == std::set<std::string>{"default/good", "zzz/also-good"});
  }
}

TEST_CASE("desired: a bad endpoint is reported against its EndpointSlice and skipped") {
  std::string eps = arr({ep("10.244.1.300"), ep("fd00::1"), ep("224.0.0.1"), ep("0.0.0.0"), ep("10.244.1.1")});
  std::string ports = R"([{"name":"http","port":8080},{"name":"big","port":70000},{"name":"odd","port":1,"protocol":"ICMP"}])";
  Desired d = compute({service("default/web", kWebSpec), slice("default/web-1", "web", "IPv4", ports, eps),
                       slice("default/web-6", "web", "IPv6", kHttpPort, arr({ep("10.244.1.9"), ep("fe80::1")}))});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr -> 10.244.1.1:8080 w1"});
  CHECK(errorStrings(d) == Lines{
                               "EndpointSlice default/web-1: endpoints[0].addresses[0] \"10.244.1.300\": not an IP address",
                               "EndpointSlice default/web-1: endpoints[1].addresses[0] \"fd00::1\": not an IPv4 address "
                               "(addressType IPv4)",
                               "EndpointSlice default/web-1: endpoints[2].addresses[0] \"224.0.0.1\": not a unicast address",
                               "EndpointSlice default/web-1: endpoints[3].addresses[0] \"0.0.0.0\": not a unicast address",
                               "EndpointSlice default/web-1: ports[1].port 70000 out of range 1..65535",
                               "EndpointSlice default/web-1: ports[2].protocol \"ICMP\" unknown (want TCP, UDP or SCTP)",
                               "EndpointSlice default/web-6: endpoints[0].addresses[0] \"10.244.1.9\": not an IPv6 address "
                               "(addressType IPv6)",
                               "EndpointSlice default/web-6: endpoints[1].addresses[0] \"fe80::1\": not a unicast address",
                           });
}

TEST_CASE("desired: parse errors are carried into Desired.errors") {
  Desired d = compute({service("default/bad", R"("ports":[{"port":"80"}])"), service("default/web", kWebSpec)});
  CHECK(errorStrings(d) == Lines{"Service default/bad: spec.ports[0].port: expected an integer, got string (test.json items[0])"});
  CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->"});
}

// --- Conflicts -------------------------------------------------------------------

TEST_CASE("desired: two Services claiming one virtual server") {
  SUBCASE("an externalIP never takes over a ClusterIP, whatever the names") {
    std::string evil = service("aaa/evil", R"("clusterIP":"10.96.0.66","externalIPs":["10.96.0.10"],
        "ports":[{"name":"dns","port":53,"protocol":"UDP"}])");
    std::string dns = service("kube-system/kube-dns", R"("clusterIP":"10.96.0.10",
        "ports":[{"name":"dns","port":53,"protocol":"UDP"}])");
    Desired d = compute({evil, dns});
    CHECK(render(d) == Lines{"UDP 10.96.0.10:53 rr ->", "UDP 10.96.0.66:53 rr ->"});
    CHECK(d.origins.at(ipvs::ServiceKey::make(ipvs::Protocol::kUdp, ip("10.96.0.10"), 53)).service ==
          "kube-system/kube-dns");
    CHECK(errorStrings(d) == Lines{"Service aaa/evil: ExternalIP virtual server UDP 10.96.0.10:53 conflicts with "
                                   "Service kube-system/kube-dns (ClusterIP); not programmed"});
    CHECK(d.services == std::set<std::string>{"aaa/evil", "kube-system/kube-dns"});  // evil keeps its ClusterIP
  }
  SUBCASE("same kind: the first by namespace/name wins") {
    std::string status = R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]})";
    std::string b = service("default/b", R"("type":"LoadBalancer","clusterIP":"10.96.0.2","ports":[{"port":80}])", "", status);
    std::string a = service("default/a", R"("type":"LoadBalancer","clusterIP":"10.96.0.1","ports":[{"port":80}])", "", status);
    std::string c = service("default/c", R"("type":"LoadBalancer","clusterIP":"10.96.0.3","ports":[{"port":443}])", "", status);
    for (const auto& items : {std::vector<std::string>{a, b, c}, std::vector<std::string>{c, b, a}}) {
      Desired d = compute(items);
      CHECK(d.origins.at(ipvs::ServiceKey::tcp(ip("192.0.2.10"), 80)).service == "default/a");
      CHECK(d.origins.at(ipvs::ServiceKey::tcp(ip("192.0.2.10"), 443)).service == "default/c");  // shared IP, other port
      CHECK(errorStrings(d) == Lines{"Service default/b: LoadBalancer virtual server TCP 192.0.2.10:80 conflicts "
                                     "with Service default/a (LoadBalancer); not programmed"});
      CHECK(vipStrings(d) == Lines{"10.96.0.1", "10.96.0.2", "10.96.0.3", "192.0.2.10"});
    }
  }
  SUBCASE("an address listed twice in one Service is one virtual server, silently") {
    Desired d = compute({service("default/twice", R"("type":"LoadBalancer","clusterIP":"10.96.0.10",
        "externalIPs":["203.0.113.7","203.0.113.7"],"ports":[{"port":80}])", "",
        R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"},{"ip":"192.0.2.10"}]})")});
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->", "TCP 192.0.2.10:80 rr ->", "TCP 203.0.113.7:80 rr ->"});
    CHECK(d.errors.empty());
  }
  SUBCASE("a Service against itself: one virtual server when both want the same real servers, else an error") {
    Desired d = compute({service("default/self", R"("clusterIP":"10.96.0.10","externalIPs":["10.96.0.10"],
        "ports":[{"port":80}])")});
    CHECK(render(d) == Lines{"TCP 10.96.0.10:80 rr ->"});
    CHECK(d.errors.empty());
    CHECK(d.notes == std::vector<std::string>{"Service default/self: ExternalIP TCP 10.96.0.10:80 is also its "
                                              "ClusterIP; one virtual server serves both"});
    d = compute({service("default/lb", R"("type":"LoadBalancer","clusterIP":"10.96.0.10",
        "externalIPs":["192.0.2.10"],"externalTrafficPolicy":"Local","ports":[{"port":80,"nodePort":30080}])", "",
                         R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]})")});
    CHECK(d.errors.empty());
    CHECK(d.notes.size() == 1);
    // externalTrafficPolicy Local: the externalIP wants this node's endpoints, the ClusterIP all.
    d = compute({service("default/self", R"("type":"NodePort","clusterIP":"10.96.0.10","externalIPs":["10.96.0.10"],
        "externalTrafficPolicy":"Local","ports":[{"port":80,"nodePort":30080}])")});
    CHECK(errorStrings(d) == Lines{"Service default/self: ExternalIP virtual server TCP 10.96.0.10:80 conflicts "
                                   "with its own ClusterIP virtual server; not programmed"});
  }
}

// --- Determinism -------------------------------------------------------------------

TEST_CASE("desired: the result does not depend on input order") {
  std::vector<std::string> items;
  std::string status = R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]})";
  for (int i = 0; i < 12; ++i) {
    std::string n = std::to_string(i);
    std::string meta = i % 3 == 0 ? R"("annotations":{"kipvs.io/zone-weights":"same=3","kipvs.io/scheduler":"wrr"})" : "";
    std::string spec = R"("type":"LoadBalancer","clusterIP":"10.96.1.)" + n + R"(","externalTrafficPolicy":")" +
                       (i % 2 ? "Local" : "Cluster") + R"(","ports":[{"name":"http","port":80,"nodePort":)" +
                       std::to_string(30000 + i) + "}]";
    items.push_back(service("ns" + std::to_string(i % 4) + "/svc" + n, spec, meta, status));
    for (int s = 0; s < 2; ++s) {
      std::vector<std::string> eps;
      for (int e = 0; e < 3; ++e) {
        std::string addr = "10.244." + n + "." + std::to_string(e + s);  // overlaps between the two slices
        eps.push_back(ep(addr, R"("nodeName":"node-)" + std::string(e % 2 ? "a" : "b") + R"(","zone":"zone-)" +
                                   std::string(e % 2 ? "a" : "b") + R"(","conditions":{"ready":)" +
                                   (s == 0 && e == 1 ? "false" : "true") + "}"));
      }
      items.push_back(slice("ns" + std::to_string(i % 4) + "/svc" + n + "-" + std::to_string(s), "svc" + n, "IPv4",
                            R"([{"name":"http","port":)" + std::to_string(8080 + s) + "}]", arr(eps)));
    }
  }
  items.push_back(service("ns0/broken", R"("clusterIP":"nope","ports":[{"port":80}])"));
  items.push_back(slice("ns0/bad-eps", "svc0", "IPv4", kHttpPort, arr({ep("x"), ep("y")})));

  Desired first = compute(items);
  CHECK(first.table.services.size() == 12 * 2 + 1);  // ClusterIP + NodePort each, one LB winner
  CHECK(errorStrings(first).size() == 1 + 2 + 11);  // broken, two bad endpoints, 11 LB conflicts on 192.0.2.10:80
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(items.begin(), items.end(), rng);
    Desired d = compute(items);
    CHECK(render(d) == render(first));
    CHECK(errorStrings(d) == errorStrings(first));
    CHECK(d.notes == first.notes);
    CHECK(d.vips == first.vips);
    CHECK(d.services == first.services);
    CHECK(d.origins.size() == first.origins.size());
    for (const auto& [k, o] : first.origins) {
      CHECK(d.origins.at(k).service == o.service);
      CHECK(d.origins.at(k).kind == o.kind);
    }
  }
}

// --- The bundled example -------------------------------------------------------------

TEST_CASE("desired: examples/cluster.json on node-a") {
  StatusOr<Cluster> c = parseFile(testing::sourcePath("examples/cluster.json"));
  REQUIRE(c.isOk());
  Desired d = computeDesired(*c, nodeA());
  CHECK(render(d) == Lines{
                         "TCP 10.96.0.1:443 rr -> 198.51.100.2:6443 w1",
                         "TCP 10.96.12.34:80 rr -> 10.244.1.11:8080 w1, 10.244.1.13:8080 w1, 10.244.2.12:8080 w1",
                         "TCP 10.96.12.34:9090 rr -> 10.244.1.11:9090 w1, 10.244.1.13:9090 w1, 10.244.2.12:9090 w1",
                         "TCP 10.96.200.10:80 rr -> 10.244.1.21:8080 w1, 10.244.2.22:8080 w1",
                         "TCP 192.0.2.10:80 rr -> 10.244.1.21:8080 w1",
                         "TCP 198.51.100.10:31080 rr -> 10.244.1.21:8080 w1",
                     });
  CHECK(vipStrings(d) == Lines{"10.96.0.1", "10.96.12.34", "10.96.200.10", "192.0.2.10"});
  CHECK(d.services == std::set<std::string>{"default/kubernetes", "default/shop", "default/web"});
  CHECK(d.errors.empty());
  CHECK(d.notes.empty());
}

}  // namespace
}  // namespace kipvs::controller

namespace kipvs::controller {
namespace {

using ipvs::Address;
using ipvs::Protocol;
using ipvs::ServiceKey;
Address A(const char* s) { return *Address::parse(s); }

TEST_CASE("desired: a Service with many ports: each finds its slice port by name and protocol; duplicates are named") {
  // 20 ports: past the pairwise duplicate check, and the slice lists them in
  // reverse with a UDP twin of each name, so matching goes by name and protocol.
  std::string svcPorts, slicePorts;
  for (int i = 0; i < 20; ++i) {
    const std::string n = "p" + std::to_string(i);
    svcPorts += std::string(i ? "," : "") + R"({"name":")" + n + R"(","port":)" + std::to_string(1000 + i) + "}";
  }
  for (int i = 19; i >= 0; --i) {
    const std::string n = "p" + std::to_string(i);
    slicePorts += std::string(i < 19 ? "," : "") + R"({"name":")" + n + R"(","port":)" + std::to_string(9000 + i) +
                  R"(,"protocol":"TCP"},{"name":")" + n + R"(","port":)" + std::to_string(7000 + i) +
                  R"(,"protocol":"UDP"})";
  }
  Desired d = compute({service("default/many", R"("clusterIP":"10.96.0.10","ports":[)" + svcPorts + "]"),
                       slice("default/many-1", "many", "IPv4", "[" + slicePorts + "]", arr({ep("10.244.1.1")}))});
  Lines want;
  for (int i = 0; i < 20; ++i) {
    want.push_back("TCP 10.96.0.10:" + std::to_string(1000 + i) + " rr -> 10.244.1.1:" + std::to_string(9000 + i) + " w1");
  }
  std::sort(want.begin(), want.end());
  Lines got = render(d);
  std::sort(got.begin(), got.end());
  CHECK(got == want);
  CHECK(d.errors.empty());
  // The 20th port repeats the 4th (1003/TCP): named at the repeat.
  std::string dup = svcPorts;
  dup.replace(dup.find(R"("port":1019)"), 11, R"("port":1003)");
  Desired bad = compute({service("default/many", R"("clusterIP":"10.96.0.10","ports":[)" + dup + "]")});
  CHECK(errorStrings(bad) == Lines{"Service default/many: port \"p19\": duplicate TCP port 1003"});
}

TEST_CASE("desired: an invalid Service's virtual servers take part in conflicts; a valid claim of its rank wins") {
  const std::string bad = R"("annotations":{"kipvs.io/scheduler":"lcc"})";
  const std::string lb = R"("loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]})";
  auto lbSpec = [](const std::string& clusterIP) {
    return R"("type":"LoadBalancer","clusterIP":")" + clusterIP + R"(","ports":[{"name":"http","port":80,"nodePort":30080}])";
  };
  // a/old (invalid) and b/new (valid) both have 192.0.2.10 (the LB IP moved):
  // new's, though old sorts first. old's ClusterIP and NodePort are kept.
  Desired d = compute({service("a/old", lbSpec("10.96.0.10"), bad, lb),
                       service("b/new", R"("type":"LoadBalancer","clusterIP":"10.96.0.20","ports":[{"name":"http","port":80}])", "", lb),
                       slice("b/new-1", "new", "IPv4", kHttpPort, arr({ep("10.244.1.1")}))});
  CHECK(render(d) == Lines{"TCP 10.96.0.20:80 rr -> 10.244.1.1:8080 w1", "TCP 192.0.2.10:80 rr -> 10.244.1.1:8080 w1"});
  CHECK(d.kept.keys == std::set<ServiceKey>{ServiceKey::tcp(A("10.96.0.10"), 80),
                                            ServiceKey::tcp(A("198.51.100.10"), 30080)});
  CHECK(d.kept.vips == std::set<Address>{A("10.96.0.10"), A("192.0.2.10")});
  REQUIRE(d.errors.size() == 1);
  CHECK(d.errors[0].name == "a/old");
  // Of two invalid Services, one keeps the key and neither is told of a conflict.
  Desired two = compute({service("a/one", kWebSpec, bad), service("b/two", kWebSpec, bad)});
  CHECK(render(two).empty());
  CHECK(two.kept.keys == std::set<ServiceKey>{ServiceKey::tcp(A("10.96.0.10"), 80)});
  CHECK(two.errors.size() == 2);
  // A protocol that does not parse keeps the port under every protocol; a
  // port number that does not parse, every port of the address.
  Desired proto = compute({service("a/p", R"("clusterIP":"10.96.0.30","ports":[{"name":"x","port":53,"protocol":"udp"}])")});
  CHECK(proto.kept.keys == std::set<ServiceKey>{ServiceKey::make(Protocol::kTcp, A("10.96.0.30"), 53),
                                                ServiceKey::make(Protocol::kUdp, A("10.96.0.30"), 53),
                                                ServiceKey::make(Protocol::kSctp, A("10.96.0.30"), 53)});
  Desired port = compute({service("a/p", R"("clusterIP":"10.96.0.30","ports":[{"name":"x","port":0}])")});
  CHECK(port.kept.keys.empty());
  CHECK(port.kept.addresses == std::set<Address>{A("10.96.0.30")});
}

}  // namespace
}  // namespace kipvs::controller
