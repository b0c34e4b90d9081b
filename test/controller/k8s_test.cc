// Parsing kubectl JSON into the Cluster model.

#include "controller/k8s.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "test/controller/cluster_dump.h"
#include "test/controller/k8s_json.h"

namespace kipvs::controller {
namespace {

using testing::parseOk;
using testing::sourcePath;

const Service* findService(const Cluster& c, const std::string& key) {
  for (const auto& s : c.services) {
    if (s.meta.key() == key) return &s;
  }
  return nullptr;
}

const EndpointSlice* findSlice(const Cluster& c, const std::string& key) {
  for (const auto& s : c.slices) {
    if (s.meta.key() == key) return &s;
  }
  return nullptr;
}

TEST_CASE("parse: a kubectl List keeps Services and EndpointSlices, ignores other kinds") {
  StatusOr<Cluster> c = parseFile(sourcePath("test/fixtures/list_mixed.json"));
  REQUIRE(c.isOk());
  // web + after-errors; broken-port and the nameless Service are errors; Pod and Endpoints ignored.
  CHECK(c->services.size() == 2);
  CHECK(c->slices.size() == 1);
  REQUIRE(c->errors.size() == 2);

  const Service* web = findService(*c, "shop/web");
  REQUIRE(web);
  CHECK(web->meta.ns == "shop");
  CHECK(web->meta.name == "web");
  CHECK(*web->meta.annotation("kipvs.io/scheduler") == "wrr");
  // Only the labels and annotations kipvs reads are kept (isKeptLabel / isKeptAnnotation).
  CHECK(web->meta.label("tier") == nullptr);
  CHECK(web->meta.label("app") == nullptr);
  CHECK(web->meta.labels.empty());
  CHECK(web->meta.annotations.size() == 1);
  CHECK(web->type == ServiceType::kLoadBalancer);
  CHECK(web->clusterIP == "10.96.0.20");
  CHECK(web->clusterIPs == std::vector<std::string>{"10.96.0.20", "fd00:10:96::20"});
  CHECK(web->ipFamilies == std::vector<std::string>{"IPv4", "IPv6"});
  REQUIRE(web->ports.size() == 2);
  CHECK(web->ports[0].name == "http");
  CHECK(web->ports[0].protocol == "TCP");  // defaulted
  CHECK(web->ports[0].port == 80);
  CHECK(!web->ports[0].targetPort.isString);
  CHECK(web->ports[0].targetPort.number == 8080);
  CHECK(web->ports[0].nodePort == 30080);
  CHECK(web->ports[1].protocol == "UDP");
  CHECK(web->ports[1].targetPort.isString);
  CHECK(web->ports[1].targetPort.toString() == "dns-udp");
  CHECK(web->ports[1].nodePort == 0);
  CHECK(web->externalIPs == std::vector<std::string>{"203.0.113.7"});
  CHECK(web->sessionAffinity == SessionAffinity::kClientIP);
  CHECK(web->affinityTimeoutSeconds == 600);
  CHECK(web->externalTrafficPolicy == TrafficPolicy::kLocal);
  CHECK(web->internalTrafficPolicy == TrafficPolicy::kLocal);
  CHECK(web->healthCheckNodePort == 32001);
  CHECK(web->trafficDistribution == "PreferClose");
  CHECK(web->loadBalancerSourceRanges == std::vector<std::string>{"192.0.2.0/24"});
  REQUIRE(web->lbIngress.size() == 3);
  CHECK(web->lbIngress[0].ip == "192.0.2.10");
  CHECK(web->lbIngress[0].ipMode == "VIP");
  CHECK(web->lbIngress[1].ip.empty());
  CHECK(web->lbIngress[1].hostname == "lb.example.com");
  CHECK(web->lbIngress[2].ipMode == "Proxy");

  const EndpointSlice* es = findSlice(*c, "shop/web-abcde");
  REQUIRE(es);
  CHECK(es->serviceName() == "web");
  CHECK(es->addressType == AddressType::kIPv4);
  REQUIRE(es->ports.size() == 3);
  CHECK(es->ports[0].name == std::optional<std::string>("http"));
  CHECK(es->ports[0].port == 8080);
  CHECK(!es->ports[1].name.has_value());  // null name stays nil, not ""
  CHECK(!es->ports[1].port.has_value());
  CHECK(es->ports[1].protocol == "TCP");
  CHECK(!es->ports[2].name.has_value());  // absent name: nil too
  CHECK(es->ports[2].protocol == "UDP");
  REQUIRE(es->endpoints.size() == 3);
  const Endpoint& e0 = es->endpoints[0];
  CHECK(e0.addresses == StringList{"10.244.1.5"});
  CHECK(e0.conditions.ready == true);
  CHECK(e0.conditions.serving == true);
  CHECK(e0.conditions.terminating == false);
  CHECK(e0.nodeName == "node-a");
  CHECK(e0.zone == "zone-a");
  CHECK(e0.hintZones() == std::vector<std::string>{"zone-a"});
  CHECK(e0.hintNodes() == std::vector<std::string>{"node-a"});
  const Endpoint& e1 = es->endpoints[1];
  CHECK(!e1.conditions.ready.has_value());  // null
  CHECK(!e1.conditions.serving.has_value());  // absent
  CHECK(e1.conditions.terminating == true);
  CHECK(e1.conditions.isReady());
  CHECK(e1.conditions.isServing());
  CHECK(e1.conditions.isTerminating());
  CHECK(e1.nodeName.empty());
  CHECK(es->endpoints[2].addresses.empty());
}

TEST_CASE("parse: a structural error skips that object only and names it") {
  StatusOr<Cluster> c = parseFile(sourcePath("test/fixtures/list_mixed.json"));
  REQUIRE(c.isOk());
  REQUIRE(c->errors.size() == 2);
  std::string path = sourcePath("test/fixtures/list_mixed.json");
  CHECK(c->errors[0].kind == "Service");
  CHECK(c->errors[0].name == "shop/broken-port");
  CHECK(c->errors[0].message == "spec.ports[0].port: expected an integer, got string (" + path + " items[4])");
  CHECK(c->errors[1].kind == "Service");
  CHECK(c->errors[1].name == "shop/<" + path + " items[5]>");
  CHECK(c->errors[1].message == "metadata.name: missing (" + path + " items[5])");
  // The object after the broken ones is still there.
  const Service* after = findService(*c, "shop/after-errors");
  REQUIRE(after);
  CHECK(after->ports[0].port == 443);
}

TEST_CASE("parse: a List inside the List is flattened, as kubectl does, not dropped") {
  const std::string inner = R"({"apiVersion":"v1","kind":"List","items":[)" +
                            testing::service("ns/b", R"("clusterIP":"10.96.0.2")") + "," +
                            testing::slice("ns/b-1", "b", "IPv4", "null", "null") + "," +
                            R"({"kind":"Service","metadata":{"namespace":"ns","name":"bad"},"spec":{"ports":7}}]})";
  const std::string typed = R"({"kind":"ServiceList","items":[{"metadata":{"namespace":"ns","name":"c"},)"
                            R"("spec":{"clusterIP":"10.96.0.3"}}]})";
  // Two items or more: the List may be split between two parse threads; each half meets one inner List.
  Cluster c = parseOk(testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1")"), inner, typed,
                                     R"({"kind":"List","items":7})"}));
  CHECK(findService(c, "ns/a"));
  CHECK(findService(c, "ns/b"));
  CHECK(findService(c, "ns/c"));
  CHECK(findSlice(c, "ns/b-1"));
  REQUIRE(c.errors.size() == 2);
  CHECK(c.errors[0].name == "ns/bad");
  CHECK(c.errors[0].message == "spec.ports: expected an array, got number (test.json items[1] items[2])");
  CHECK(c.errors[1].kind == "List");
  CHECK(c.errors[1].message == "items is number, not an array (test.json items[3])");
}

TEST_CASE("parse: a Service or EndpointSlice is read only in the API version kipvs reads") {
  auto versioned = [](std::string object, const std::string& version) {  // its apiVersion's value replaced
    const size_t at = object.find("\"apiVersion\":") + 13;
    return object.replace(at, object.find(',', at) - at, version);
  };
  const std::string svc = testing::service("ns/s", R"("clusterIP":"10.96.0.1")");
  const std::string sl = testing::slice("ns/s-1", "s", "IPv4", "null", "null");
  struct Case {
    const char* name;
    std::string item;
    bool read;
    std::string error;  // "" for none
  } cases[] = {
      {"core v1 Service", svc, true, ""},
      {"Service without apiVersion", R"({"kind":"Service","metadata":{"namespace":"ns","name":"s"},"spec":{}})", true, ""},
      {"Knative's Service: another resource", versioned(svc, R"("serving.knative.dev/v1")"), false, ""},
      {"discovery.k8s.io/v1 EndpointSlice", sl, true, ""},
      {"v1beta1 EndpointSlice", versioned(sl, R"("discovery.k8s.io/v1beta1")"), false,
       "apiVersion discovery.k8s.io/v1beta1 is not read (no longer served since Kubernetes 1.25: kubectl gets "
       "discovery.k8s.io/v1) (test.json items[0])"},
      {"apiVersion not a string", versioned(svc, "1"), false, "apiVersion is not a string (test.json items[0])"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    INFO(tc.item);
    Cluster c = parseOk(testing::list({tc.item, testing::service("ns/other", R"("clusterIP":"10.96.0.9")")}));
    CHECK(c.services.size() + c.slices.size() == (tc.read ? 2u : 1u));
    if (tc.error.empty()) {
      CHECK(c.errors.empty());
    } else {
      REQUIRE(c.errors.size() == 1);
      CHECK(c.errors[0].message == tc.error);
    }
  }
}

TEST_CASE("parse: ServiceList and EndpointSliceList items may omit kind") {
  StatusOr<Cluster> s = parseFile(sourcePath("test/fixtures/service_list.json"));
  REQUIRE(s.isOk());
  CHECK(s->services.size() == 2);
  CHECK(s->slices.empty());
  CHECK(s->errors.empty());
  const Service* dns = findService(*s, "kube-system/kube-dns");
  REQUIRE(dns);
  CHECK(dns->clusterIPs.empty());
  CHECK(dns->clusterIP == "10.96.0.10");
  CHECK(dns->type == ServiceType::kClusterIP);

  StatusOr<Cluster> e = parseFile(sourcePath("test/fixtures/endpointslice_list.json"));
  REQUIRE(e.isOk());
  CHECK(e->services.empty());
  CHECK(e->slices.size() == 2);
  CHECK(e->errors.empty());
  // "ports": null and "endpoints": null are valid and empty.
  const EndpointSlice* idle = findSlice(*e, "default/idle-x2");
  REQUIRE(idle);
  CHECK(idle->ports.empty());
  CHECK(idle->endpoints.empty());
}

// Labels and annotations: only those kipvs reads are kept, by every reader
// (the List's item builder, the whole-document reader for a single object),
// and every value is still checked to be a string.
TEST_CASE("parse: only the labels and annotations kipvs reads are kept; every value must still be a string") {
  const std::string svc =
      R"({"kind":"Service","apiVersion":"v1","metadata":{"name":"s","namespace":"ns",)"
      R"("labels":{"app":"s","service.kubernetes.io/headless":"","service.kubernetes.io/service-proxy-name":"p",)"
      R"("app.kubernetes.io/managed-by":"Helm"},)"
      R"("annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\"}\n",)"
      R"("kipvs.io/scheduler":"wlc","meta.helm.sh/release-name":"r","kipvs.io/zone-weights":"same=2,other=1"}},)"
      R"("spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}})";
  const std::string slice =
      R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"s-1","namespace":"ns",)"
      R"("labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io",)"
      R"("kubernetes.io/service-name":"s","app":"s"},)"
      R"("annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-11-27T00:00:00Z"}},)"
      R"("addressType":"IPv4","endpoints":[]})";
  for (const std::string& text : {"{\"kind\":\"List\",\"items\":[" + svc + "," + slice + "]}", svc, slice}) {
    CAPTURE(text);
    StatusOr<Cluster> c = parseJson(text, "t.json");
    REQUIRE(c.isOk());
    CHECK(c->errors.empty());
    for (const auto& s : c->services) {
      CHECK(s.meta.labels == StringMap{{"service.kubernetes.io/headless", ""},
                                       {"service.kubernetes.io/service-proxy-name", "p"}});
      CHECK(s.meta.annotations == StringMap{{"kipvs.io/scheduler", "wlc"}, {"kipvs.io/zone-weights", "same=2,other=1"}});
    }
    for (const auto& s : c->slices) {
      CHECK(s.meta.labels == StringMap{{"kubernetes.io/service-name", "s"}});
      CHECK(s.meta.annotations.empty());
      CHECK(s.serviceName() == "s");
    }
  }
  // A value that is not a string is an error even where the entry would not be kept.
  for (const char* bad : {R"("labels":{"app":5})", R"("annotations":{"meta.helm.sh/release-name":true})",
                          R"("labels":{"app":null})", R"("annotations":{"x":{}})"}) {
    const std::string one = std::string(R"({"kind":"Service","apiVersion":"v1","metadata":{"name":"s","namespace":"ns",)") +
                            bad + R"(},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}})";
    for (const std::string& text : {"{\"kind\":\"List\",\"items\":[" + one + "]}", one}) {
      CAPTURE(text);
      StatusOr<Cluster> c = parseJson(text, "t.json");
      REQUIRE(c.isOk());
      CHECK(c->services.empty());
      REQUIRE(c->errors.size() == 1);
      CHECK(c->errors[0].message.find("expected a string") != std::string::npos);
    }
  }
}

// An endpoint's addresses keep their first element inline (StringList): every
// reader must still keep them all, in order.
TEST_CASE("parse: an endpoint with several addresses keeps them all, in order") {
  const std::string slice =
      R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"m-1","namespace":"ns",)"
      R"("labels":{"kubernetes.io/service-name":"m"}},"addressType":"IPv4","endpoints":[)"
      R"({"addresses":["10.1.0.1","10.1.0.2","10.1.0.3"]},{"addresses":[]},{"addresses":["10.1.0.9"]}]})";
  for (const std::string& text : {"{\"kind\":\"List\",\"items\":[" + slice + "]}", slice}) {
    CAPTURE(text);
    StatusOr<Cluster> c = parseJson(text, "t.json");
    REQUIRE(c.isOk());
    REQUIRE(c->slices.size() == 1);
    const auto& eps = c->slices[0].endpoints;
    REQUIRE(eps.size() == 3);
    CHECK(eps[0].addresses == StringList{"10.1.0.1", "10.1.0.2", "10.1.0.3"});
    CHECK(eps[0].addresses.size() == 3);
    CHECK(eps[0].addresses[2] == "10.1.0.3");
    std::vector<std::string> seen(eps[0].addresses.begin(), eps[0].addresses.end());
    CHECK(seen == std::vector<std::string>{"10.1.0.1", "10.1.0.2", "10.1.0.3"});
    CHECK(eps[1].addresses.empty());
    CHECK(eps[2].addresses == StringList{"10.1.0.9"});
    CHECK_FALSE(eps[2].addresses == StringList{"10.1.0.9", "10.1.0.1"});
  }
}

TEST_CASE("parse: a single object") {
  StatusOr<Cluster> c = parseFile(sourcePath("test/fixtures/single_service.json"));
  REQUIRE(c.isOk());
  REQUIRE(c->services.size() == 1);
  CHECK(c->services[0].meta.key() == "kube-system/kube-dns");

  Cluster s = parseOk(testing::slice("default/one", "svc", "IPv6", "null", "null"));
  REQUIRE(s.slices.size() == 1);
  CHECK(s.slices[0].addressType == AddressType::kIPv6);
}

// Found by test/fuzz/parse_fuzz.cc: rapidjson's SSE2 string scan let 0x1A-0x1F
// through where a string's bytes were 16-byte aligned (see meson.build).
TEST_CASE("parse: a raw 0x1A-0x1F in a string is an error wherever the string lies in memory") {
  for (char bad : {'\x1a', '\x1b', '\x1f'}) {
    for (int pad = 0; pad < 16; ++pad) {
      const std::string json =
          std::string(pad, ' ') +
          R"({"kind":"List","items":[{"kind":"Service","metadata":{"name":"ab"},"x":"0123456789abcdefghijklmnopqrstuv)" +
          std::string(1, bad) + R"("}]})";
      CAPTURE(pad);
      CAPTURE(static_cast<int>(bad));
      const size_t at = json.find(bad);
      const std::string want = "t.json: invalid JSON at byte " + std::to_string(at) + " (line 1, column " +
                               std::to_string(at + 1) + "): Invalid escape character in string.";
      StatusOr<Cluster> c = parseJson(json, "t.json");
      REQUIRE_FALSE(c.isOk());
      CHECK(c.status().message() == want);
      ParseOptions streamed;
      streamed.mapFiles = false;
      streamed.chunkBytes = 7;
      testing::TempFile f(json, "t.json");
      StatusOr<Cluster> fromFile = parseFile(f.path, streamed);
      REQUIRE_FALSE(fromFile.isOk());
      CHECK(fromFile.status().message().ends_with("invalid JSON at byte " + std::to_string(at) + " (line 1, column " +
                                                  std::to_string(at + 1) + "): Invalid escape character in string."));
    }
  }
}

TEST_CASE("parse: malformed JSON names the file, byte offset, line:column and the reason") {
  std::string path = sourcePath("test/fixtures/malformed.json");
  StatusOr<Cluster> c = parseFile(path);
  REQUIRE(!c.isOk());
  CHECK(c.status().code() == Code::kParse);
  CHECK(c.status().message() ==
        path + ": invalid JSON at byte 83 (line 4, column 51): Missing a name for object member.");

  StatusOr<Cluster> t = parseJson("{\"kind\": \"List\", \"items\": [1, 2", "inline");
  REQUIRE(!t.isOk());
  CHECK(t.status().message() ==
        "inline: invalid JSON at byte 31 (line 1, column 32): Missing a comma or ']' after an array element.");

  StatusOr<Cluster> empty = parseJson("", "empty.json");
  REQUIRE(!empty.isOk());
  CHECK(empty.status().message() == "empty.json: invalid JSON at byte 0 (line 1, column 1): The document is empty.");

  StatusOr<Cluster> trailing = parseJson("{\"kind\":\"List\"}\n{}", "two.json");
  REQUIRE(!trailing.isOk());
  CHECK(trailing.status().message() ==
        "two.json: invalid JSON at byte 16 (line 2, column 1): The document root must not be followed by other values.");

  // A UTF-8 byte order mark is skipped, as kubectl does; offsets stay the file's.
  const std::string bom = "\xEF\xBB\xBF";
  StatusOr<Cluster> withBom =
      parseJson(bom + testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1")")}), "bom.json");
  REQUIRE_MESSAGE(withBom.isOk(), withBom.status().toString());
  CHECK(withBom->services.size() == 1);
  StatusOr<Cluster> badBom = parseJson(bom + "{\"kind\": \"List\", \"items\": [1, 2", "bom.json");
  REQUIRE(!badBom.isOk());
  CHECK(badBom.status().message() ==
        "bom.json: invalid JSON at byte 34 (line 1, column 35): Missing a comma or ']' after an array element.");

  std::string withNul("{\"kind\":\"List\"}\0junk", 20);
  StatusOr<Cluster> nul = parseJson(withNul, "nul.json");
  REQUIRE(!nul.isOk());
  CHECK(nul.status().message() == "nul.json: invalid JSON at byte 15 (line 1, column 16): NUL byte in input");
}

TEST_CASE("parse: problems with the document itself fail the whole input") {
  struct Case {
    const char* json;
    const char* message;
  } cases[] = {
      {"[]", "x.json: top-level JSON value is array, not a Kubernetes object or List"},
      {"{\"items\": []}", "x.json: top-level object has no kind"},
      {"{\"kind\": \"List\", \"items\": {}}", "x.json: List.items is object, not an array"},
      {"{\"kind\": \"List\", \"items\": [], \"items\": []}", "x.json: top-level key \"items\" given twice"},
      {"{\"kind\": \"List\", \"items\": [], \"kind\": \"ServiceList\"}", "x.json: top-level key \"kind\" given twice"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.json);
    StatusOr<Cluster> c = parseJson(tc.json, "x.json");
    REQUIRE(!c.isOk());
    CHECK(c.status().code() == Code::kParse);
    CHECK(c.status().message() == tc.message);
  }
  // An empty List, or one with null items, is fine.
  CHECK(parseOk("{\"kind\":\"List\",\"items\":[]}").services.empty());
  CHECK(parseOk("{\"kind\":\"List\",\"items\":null}").services.empty());
  // A single object of another kind: nothing, no error.
  Cluster pod = parseOk("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}");
  CHECK(pod.services.empty());
  CHECK(pod.errors.empty());
}

TEST_CASE("parse: a field kipvs does not read may be given twice") {
  Cluster c = parseOk(testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1","selector":{},"selector":{})",
                                                      R"("labels":{"app":"a","app":"b"})")}));
  CHECK(c.errors.empty());
  REQUIRE(c.services.size() == 1);
  CHECK(c.services[0].clusterIP == "10.96.0.1");
}

TEST_CASE("parse: per-object structural errors, table-driven") {
  struct Case {
    std::string item;
    std::string kind, name, message;
  } cases[] = {
      {testing::service("ns/a", R"("ports":[{"port":80.5}])"), "Service", "ns/a",
       "spec.ports[0].port: expected an integer, got number"},
      {testing::service("ns/a", R"("ports":[{"name":"x"}])"), "Service", "ns/a", "spec.ports[0].port: missing"},
      {testing::service("ns/a", R"("ports":[{"port":80,"targetPort":true}])"), "Service", "ns/a",
       "spec.ports[0].targetPort: expected an integer or a string, got boolean"},
      {testing::service("ns/a", R"("ports":{"port":80})"), "Service", "ns/a",
       "spec.ports: expected an array, got object"},
      {testing::service("ns/a", R"("type":"Magic")"), "Service", "ns/a", "spec.type: unknown Service type \"Magic\""},
      {testing::service("ns/a", R"("externalTrafficPolicy":"Nearby")"), "Service", "ns/a",
       "spec.externalTrafficPolicy: unknown traffic policy \"Nearby\""},
      {testing::service("ns/a", R"("sessionAffinity":"Cookie")"), "Service", "ns/a",
       "spec.sessionAffinity: unknown session affinity \"Cookie\""},
      {testing::service("ns/a", R"("clusterIPs":["10.96.0.1", 7])"), "Service", "ns/a",
       "spec.clusterIPs[1]: expected a string, got number"},
      {testing::service("ns/a", R"("sessionAffinityConfig":{"clientIP":{"timeoutSeconds":"60"}})"), "Service", "ns/a",
       "spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer, got string"},
      {testing::service("ns/a", "", R"("labels":{"app":1})"), "Service", "ns/a",
       "metadata.labels.app: expected a string, got number"},
      {testing::service("ns/a", "", "", R"("loadBalancer":{"ingress":[{"ip":5}]})"), "Service", "ns/a",
       "status.loadBalancer.ingress[0].ip: expected a string, got number"},
      {R"({"kind":"Service","spec":{}})", "Service", "default/<test.json items[0]>", "metadata: missing"},
      {testing::slice("ns/s", "a", "IPX", "[]", "[]"), "EndpointSlice", "ns/s",
       "addressType: unknown address type \"IPX\""},
      {R"({"kind":"EndpointSlice","metadata":{"name":"s"}})", "EndpointSlice", "default/s", "addressType: missing"},
      {testing::slice("ns/s", "a", "IPv4", R"([{"name":"http","port":"80"}])", "[]"), "EndpointSlice", "ns/s",
       "ports[0].port: expected an integer, got string"},
      {testing::slice("ns/s", "a", "IPv4", "[]", R"([{"addresses":"10.0.0.1"}])"), "EndpointSlice", "ns/s",
       "endpoints[0].addresses: expected an array, got string"},
      {testing::slice("ns/s", "a", "IPv4", "[]", R"([{"addresses":["10.0.0.1"],"conditions":{"ready":"yes"}}])"),
       "EndpointSlice", "ns/s", "endpoints[0].conditions.ready: expected a boolean, got string"},
      {testing::slice("ns/s", "a", "IPv4", "[]", R"([{"addresses":["10.0.0.1"],"hints":{"forZones":["a"]}}])"),
       "EndpointSlice", "ns/s", "endpoints[0].hints.forZones[0]: expected an object, got string"},
      // A field kipvs reads, given twice: kubectl's strict reading refuses it (which was meant?).
      {testing::service("ns/a", R"("clusterIP":"10.96.0.1","clusterIP":"10.96.0.2")"), "Service", "ns/a",
       "spec.clusterIP: given twice"},
      {testing::service("ns/a", R"("ports":[{"port":80,"port":81}])"), "Service", "ns/a",
       "spec.ports[0].port: given twice"},
      {testing::service("ns/a", R"("ports":[{"port":80,"targetPort":8080,"targetPort":"http"}])"), "Service", "ns/a",
       "spec.ports[0].targetPort: given twice"},
      {testing::service("ns/a", "", R"("labels":{"service.kubernetes.io/headless":"","service.kubernetes.io/headless":"x"})"),
       "Service", "ns/a", "metadata.labels.service.kubernetes.io/headless: given twice"},
      {testing::slice("ns/s", "a", "IPv4", "[]", R"([{"addresses":["10.0.0.1"],"nodeName":"a","nodeName":"b"}])"),
       "EndpointSlice", "ns/s", "endpoints[0].nodeName: given twice"},
      {R"({"kind":"Service","kind":"Service","metadata":{"name":"twice"}})", "?", "default/twice", "kind: given twice"},
      {R"({"metadata":{"name":"nokind"}})", "?", "default/nokind", "item has no kind"},
      {"42", "?", "<test.json items[0]>", "item is number, not an object"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.item);
    // The broken item first, a good one after it: the good one survives.
    Cluster c = parseOk(testing::list({tc.item, testing::service("ns/good", R"("clusterIP":"10.96.0.5")")}));
    REQUIRE(c.errors.size() == 1);
    CHECK(c.errors[0].kind == tc.kind);
    CHECK(c.errors[0].name == tc.name);
    std::string suffix = " (test.json items[0])";
    if (tc.kind == "?" && tc.name.front() == '<') suffix = "";
    CHECK(c.errors[0].message == tc.message + suffix);
    REQUIRE(c.services.size() == 1);
    CHECK(c.services[0].meta.name == "good");
  }
}

TEST_CASE("parse: namespace defaults to \"default\" when absent") {
  Cluster c = parseOk(R"({"kind":"Service","metadata":{"name":"x"},"spec":{}})");
  REQUIRE(c.services.size() == 1);
  CHECK(c.services[0].meta.key() == "default/x");
}

TEST_CASE("ShortString: inline up to 15 bytes, on the heap beyond; copies, moves and compares as a string") {
  for (size_t n : {0, 1, 14, 15, 16, 17, 64, 300}) {
    CAPTURE(n);
    std::string text;
    for (size_t i = 0; i < n; ++i) text += static_cast<char>('a' + i % 26);
    ShortString s(text);
    CHECK(s.size() == n);
    CHECK(s.empty() == (n == 0));
    CHECK(s.view() == text);
    CHECK(s == text);
    CHECK(s.str() == text);
    ShortString copy(s);
    CHECK(copy == s);
    CHECK(copy.data() != s.data());  // deep
    ShortString moved(std::move(copy));
    CHECK(moved == text);
    CHECK(copy.empty());  // NOLINT: a moved-from one is empty
    ShortString assigned;
    assigned = moved;
    CHECK(assigned == text);
    assigned = assigned.view().substr(n / 2);  // from its own bytes
    CHECK(assigned == text.substr(n / 2));
    assigned = std::move(moved);
    CHECK(assigned == text);
    assigned = assigned;  // NOLINT: self-assignment
    CHECK(assigned == text);
    assigned.clear();
    CHECK(assigned.empty());
    CHECK(assigned == "");
  }
  ShortString a("node-a");
  CHECK(a == "node-a");
  CHECK_FALSE(a == "node-b");
  CHECK(a == std::string_view("node-a"));
  CHECK_FALSE(a == ShortString("node-a-but-longer-than-fifteen"));
  a.assign("ip-10-0-12-34.eu-west-1.compute.internal");
  CHECK(a == "ip-10-0-12-34.eu-west-1.compute.internal");
  CHECK(sizeof(ShortString) == 16);
}

TEST_CASE("parse: several files merge; a later file replaces an object of the same name") {
  StatusOr<Cluster> c = parseFiles({sourcePath("test/fixtures/service_list.json"),
                                    sourcePath("test/fixtures/endpointslice_list.json"),
                                    sourcePath("test/fixtures/single_service.json")});
  REQUIRE(c.isOk());
  CHECK(c->services.size() == 2);
  CHECK(c->slices.size() == 2);
  const Service* dns = findService(*c, "kube-system/kube-dns");
  REQUIRE(dns);
  CHECK(dns->clusterIP == "10.96.0.99");  // from single_service.json
  CHECK(dns->ports.size() == 1);

  Cluster a = parseOk(testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1")"), "42"}));
  Cluster b = parseOk(testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.2")"),
                                     testing::service("ns/b", R"("clusterIP":"10.96.0.3")")}));
  a.merge(std::move(b));
  REQUIRE(a.services.size() == 2);
  CHECK(findService(a, "ns/a")->clusterIP == "10.96.0.2");
  CHECK(a.errors.size() == 1);

  // Many parts at once: as merge() one by one. An object keeps its first
  // place and takes its last copy; errors are appended part by part.
  std::vector<Cluster> parts;
  for (int i = 0; i < 5; ++i) {
    parts.push_back(parseOk(testing::list({testing::service("ns/s" + std::to_string(i % 2),
                                                            R"("clusterIP":"10.96.0.)" + std::to_string(i + 1) + "\""),
                                           "\"e" + std::to_string(i) + "\""})));
  }
  Cluster one = parseOk(R"({"kind":"List","items":[]})");
  for (const Cluster& p : parts) one.merge(Cluster(p));
  Cluster all = Cluster::merged(std::move(parts));
  CHECK(testing::dumpAll(StatusOr<Cluster>(std::move(all))) == testing::dumpAll(StatusOr<Cluster>(Cluster(one))));
  REQUIRE(one.services.size() == 2);
  CHECK(one.services[0].meta.name == "s0");
  CHECK(one.services[0].clusterIP == "10.96.0.5");
  CHECK(one.services[1].clusterIP == "10.96.0.4");
  REQUIRE(one.errors.size() == 5);
  CHECK(one.errors[4].name.find("items[1]") != std::string::npos);
  CHECK(Cluster::merged({}).services.empty());
}

TEST_CASE("parse: a later copy of an object replaces the earlier one, in kubectl's order and out of it") {
  // The parser indexes names only once objects come out of (namespace, name)
  // order: every way of breaking the order must still find the earlier copy.
  auto svcAt = [](const std::string& key, int ip) {
    return testing::service(key, R"("clusterIP":"10.96.0.)" + std::to_string(ip) + "\"");
  };
  auto sliceOf = [](const std::string& key, const std::string& addr) {
    return testing::slice(key, "x", "IPv4", "[]", "[" + testing::ep(addr) + "]");
  };
  auto names = [](const Cluster& c) {
    std::string out;
    for (const auto& s : c.services) out += s.meta.key() + "=" + s.clusterIP + " ";
    for (const auto& s : c.slices) out += s.meta.key() + "=" + s.endpoints.at(0).addresses[0] + " ";
    return out;
  };
  struct Case {
    std::vector<std::string> items;
    std::string want;
  };
  const std::vector<Case> cases = {
      // In order: nothing to replace.
      {{svcAt("a/x", 1), svcAt("a/y", 2), svcAt("b/a", 3)}, "a/x=10.96.0.1 a/y=10.96.0.2 b/a=10.96.0.3 "},
      // The copy right after the first (equal, not after it).
      {{svcAt("a/x", 1), svcAt("a/y", 2), svcAt("a/y", 3), svcAt("b/a", 4)},
       "a/x=10.96.0.1 a/y=10.96.0.3 b/a=10.96.0.4 "},
      // The copy once the order is broken: found among the objects before.
      {{svcAt("a/x", 1), svcAt("a/y", 2), svcAt("b/a", 3), svcAt("a/x", 4)},
       "a/x=10.96.0.4 a/y=10.96.0.2 b/a=10.96.0.3 "},
      // Out of order first, the copy much later.
      {{svcAt("b/a", 1), svcAt("a/x", 2), svcAt("c/c", 3), svcAt("d/d", 4), svcAt("b/a", 5)},
       "b/a=10.96.0.5 a/x=10.96.0.2 c/c=10.96.0.3 d/d=10.96.0.4 "},
      // The namespace decides before the name; a name in another namespace is another object.
      {{svcAt("a/z", 1), svcAt("b/a", 2), svcAt("b/z", 3), svcAt("a/z", 4)}, "a/z=10.96.0.4 b/a=10.96.0.2 b/z=10.96.0.3 "},
      {{svcAt("a/z", 1), svcAt("b/z", 2)}, "a/z=10.96.0.1 b/z=10.96.0.2 "},
      // Slices keep an order of their own: Services before them do not break it.
      {{svcAt("z/z", 1), sliceOf("a/s-1", "10.0.0.1"), sliceOf("a/s-2", "10.0.0.2"), sliceOf("a/s-1", "10.0.0.3")},
       "z/z=10.96.0.1 a/s-1=10.0.0.3 a/s-2=10.0.0.2 "},
      {{sliceOf("a/s-1", "10.0.0.1"), sliceOf("a/s-1", "10.0.0.2")}, "a/s-1=10.0.0.2 "},
      // The API server's order is its keys' ("namespace/name", byte by byte):
      // a namespace that is a prefix of another comes after it ('-' < '/').
      {{svcAt("app-staging/x", 1), svcAt("app/x", 2), svcAt("app/y", 3)},
       "app-staging/x=10.96.0.1 app/x=10.96.0.2 app/y=10.96.0.3 "},
      {{svcAt("app-staging/x", 1), svcAt("app/x", 2), svcAt("app-staging/x", 3)},
       "app-staging/x=10.96.0.3 app/x=10.96.0.2 "},
      {{svcAt("app/x", 1), svcAt("app-staging/x", 2), svcAt("app/x", 3)}, "app/x=10.96.0.3 app-staging/x=10.96.0.2 "},
  };
  for (const auto& c : cases) {
    CAPTURE(c.want);
    CHECK(names(parseOk(testing::list(c.items))) == c.want);
  }
  // Files merged: the first file in order, the second's copy of its object.
  Cluster a = parseOk(testing::list({svcAt("a/x", 1), svcAt("a/y", 2)}));
  a.merge(parseOk(testing::list({svcAt("a/x", 3)})));
  CHECK(names(a) == "a/x=10.96.0.3 a/y=10.96.0.2 ");
  // The first file out of order: its last object comes before the second's
  // copy, which must still find the first.
  Cluster b = parseOk(testing::list({svcAt("a/y", 1), svcAt("a/x", 2)}));
  b.merge(parseOk(testing::list({svcAt("a/y", 3)})));
  CHECK(names(b) == "a/y=10.96.0.3 a/x=10.96.0.2 ");
}

TEST_CASE("parse: keepMapped holds a mapped file's mapping for the caller to drop; nothing else is held") {
  auto mapsName = [](const std::string& path) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0) return true;
    }
    return false;
  };
  testing::TempFile f(testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1","ports":[{"port":80}])")}));
  std::vector<std::shared_ptr<const void>> held;
  ParseOptions o;
  o.keepMapped = &held;
  StatusOr<Cluster> c = parseFiles({f.path}, o);
  REQUIRE(c.isOk());
  CHECK(c->services.size() == 1);
  REQUIRE(held.size() == 1);
  CHECK(mapsName(f.path));
  held.clear();
  CHECK_FALSE(mapsName(f.path));
  // Without it, unmapped as the parse returns.
  CHECK(parseFiles({f.path}).isOk());
  CHECK_FALSE(mapsName(f.path));
  // A file read rather than mapped holds nothing.
  o.mapFiles = false;
  CHECK(parseFiles({f.path}, o).isOk());
  CHECK(held.empty());
}

TEST_CASE("parse: a missing file is an I/O error naming it") {
  StatusOr<Cluster> c = parseFile("/nonexistent/cluster.json");
  REQUIRE(!c.isOk());
  CHECK(c.status().code() == Code::kIo);
  CHECK(c.status().errnum() == ENOENT);
  CHECK(c.status().message() == "cannot open /nonexistent/cluster.json");
  CHECK(c.status().toString() == "cannot open /nonexistent/cluster.json: No such file or directory (ENOENT)");
  StatusOr<Cluster> many = parseFiles({sourcePath("test/fixtures/service_list.json"), "/nonexistent/x.json"});
  CHECK(!many.isOk());
}

// Runs parseFile("-") with stdin taken from fd.
StatusOr<Cluster> parseStdinFrom(int fd) {
  int saved = ::dup(STDIN_FILENO);
  ::dup2(fd, STDIN_FILENO);
  StatusOr<Cluster> c = parseFile("-");
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  return c;
}

TEST_CASE("parse: \"-\" reads stdin, from a file or a pipe of any size") {
  int fd = ::open(sourcePath("test/fixtures/service_list.json").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  StatusOr<Cluster> c = parseStdinFrom(fd);
  ::close(fd);
  REQUIRE(c.isOk());
  CHECK(c->services.size() == 2);

  // Bigger than the first 64 KiB read, through a pipe (no size known up front).
  std::vector<std::string> items;
  for (int i = 0; i < 2000; ++i) {
    items.push_back(testing::service("ns/s" + std::to_string(i), R"("clusterIP":"10.96.0.1","ports":[{"port":80}])"));
  }
  std::string big = testing::list(items);
  REQUIRE(big.size() > 100000);
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::thread writer([&] {
    size_t off = 0;
    while (off < big.size()) {
      ssize_t n = ::write(p[1], big.data() + off, big.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(p[1]);
  });
  StatusOr<Cluster> piped = parseStdinFrom(p[0]);
  writer.join();
  ::close(p[0]);
  REQUIRE(piped.isOk());
  CHECK(piped->services.size() == 2000);

  // A ServiceList whose kind comes after items without kind: the streaming
  // parse falls back to the whole-document one, which reads the same bytes
  // (a pipe cannot be read twice).
  {
    std::string late = R"({"items":[{"metadata":{"namespace":"ns","name":"a\u0062c"},"spec":{"clusterIP":"10.96.0.9","ports":[{"port":80}]}}],"kind":"ServiceList"})";
    REQUIRE(::pipe(p) == 0);
    REQUIRE(::write(p[1], late.data(), late.size()) == static_cast<ssize_t>(late.size()));
    ::close(p[1]);
    StatusOr<Cluster> c2 = parseStdinFrom(p[0]);
    ::close(p[0]);
    REQUIRE_MESSAGE(c2.isOk(), c2.status().toString());
    REQUIRE(c2->services.size() == 1);
    CHECK(c2->services[0].meta.key() == "ns/abc");
    CHECK(c2->services[0].clusterIP == "10.96.0.9");
  }

  // Errors name stdin.
  REQUIRE(::pipe(p) == 0);
  REQUIRE(::write(p[1], "{", 1) == 1);
  ::close(p[1]);
  StatusOr<Cluster> bad = parseStdinFrom(p[0]);
  ::close(p[0]);
  REQUIRE(!bad.isOk());
  CHECK(bad.status().message() ==
        "<stdin>: invalid JSON at byte 1 (line 1, column 2): Missing a name for object member.");
}

using testing::TempFile;

// parseFile maps the file and reads up to its end: sizes at a page boundary
// (no zero bytes after the data in the file's last page) must neither read
// past it nor miss a truncation there.
TEST_CASE("parse: files whose size is a multiple of the page size") {
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::string base = testing::list({testing::service("ns/a", R"("clusterIP":"10.96.0.1","ports":[{"port":80}])")});
  REQUIRE(base.size() < page);
  std::string good = base + std::string(2 * page - base.size(), ' ');  // trailing whitespace up to the boundary
  REQUIRE(good.size() % page == 0);
  {
    TempFile f(good);
    StatusOr<Cluster> c = parseFile(f.path);
    REQUIRE_MESSAGE(c.isOk(), c.status().toString());
    CHECK(c->services.size() == 1);
  }
  // Cut one byte short of the closing brace, at the boundary.
  std::string cut = std::string(2 * page - base.size() + 1, ' ') + base.substr(0, base.size() - 1);
  REQUIRE(cut.size() % page == 0);
  {
    TempFile f(cut);
    StatusOr<Cluster> c = parseFile(f.path);
    REQUIRE(!c.isOk());
    CHECK(c.status().message() == f.path + ": invalid JSON at byte " + std::to_string(cut.size()) +
                                      " (line 1, column " + std::to_string(cut.size() + 1) +
                                      "): Missing a comma or '}' after an object member.");
    CHECK(c.status().message() == parseJson(cut, f.path).status().message());
  }
}

TEST_CASE("parse: a file and the same text parse alike, in kubectl's key order too") {
  // kubectl sorts keys: items before the List's kind, endpoints before the slice's kind.
  std::string sorted = R"({"apiVersion":"v1","items":[)"
                       R"({"addressType":"IPv4","endpoints":[{"addresses":["10.244.0.1"]}],"kind":"EndpointSlice",)"
                       R"("metadata":{"labels":{"kubernetes.io/service-name":"a"},"name":"a-1","namespace":"ns"},"ports":[{"name":"","port":80}]},)"
                       R"({"kind":"Service","metadata":{"name":"a","namespace":"ns"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}})"
                       R"(],"kind":"List","metadata":{"resourceVersion":""}})";
  TempFile f(sorted);
  StatusOr<Cluster> fromFile = parseFile(f.path);
  REQUIRE(fromFile.isOk());
  REQUIRE(fromFile->services.size() == 1);
  REQUIRE(fromFile->slices.size() == 1);
  CHECK(fromFile->slices[0].endpoints[0].addresses[0] == "10.244.0.1");
  Cluster fromText = parseOk(sorted);
  CHECK(fromText.services[0].meta.key() == "ns/a");
  CHECK(fromText.slices[0].meta.key() == "ns/a-1");
}

TEST_CASE("parse: nesting deeper than 10000 levels is an error, not a stack overflow") {
  auto nested = [](int depth) {
    return R"({"kind":"List","items":[{"kind":"Pod","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}]}";
  };
  // 10000 levels in all: the List, items, the item, then 9997 arrays.
  Cluster ok = parseOk(nested(9997));
  CHECK(ok.services.empty());
  StatusOr<Cluster> deep = parseJson(nested(9998), "deep.json");
  REQUIRE(!deep.isOk());
  CHECK(deep.status().code() == Code::kParse);
  CHECK(deep.status().message() == "deep.json: invalid JSON at byte 10040 (line 1, column 10041): nesting deeper than 10000 levels");
  // Far deeper (the old reader crashed here), in a file.
  TempFile f(nested(500000));
  StatusOr<Cluster> far = parseFile(f.path);
  REQUIRE(!far.isOk());
  CHECK(far.status().message().find("nesting deeper than 10000 levels") != std::string::npos);
}

TEST_CASE("parse: the bundled example cluster") {
  StatusOr<Cluster> c = parseFile(sourcePath("examples/cluster.json"));
  REQUIRE(c.isOk());
  CHECK(c->services.size() == 5);
  CHECK(c->slices.size() == 4);
  CHECK(c->errors.empty());
}

}  // namespace
}  // namespace kipvs::controller
