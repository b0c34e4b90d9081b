// YAML input: manifests read as the JSON they stand for (controller/yaml.h).
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "controller/k8s.h"
#include "controller/yaml.h"
#include "test/controller/cluster_dump.h"
#include "test/controller/k8s_json.h"

namespace kipvs::controller {
namespace {

StatusOr<Cluster> parseYamlText(const std::string& yaml) {
  testing::TempFile f(yaml, "in.yaml");
  return parseFile(f.path);
}

// The one error of a cluster that parsed, for short checks.
std::string onlyError(const StatusOr<Cluster>& c) {
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  REQUIRE(c->errors.size() == 1);
  return c->errors[0].toString();
}

// The JSON one YAML document stands for.
std::string jsonOf(const std::string& yaml) {
  StatusOr<std::vector<YamlDocument>> d = yamlToJson(yaml, "t");
  REQUIRE_MESSAGE(d.isOk(), d.status().toString());
  REQUIRE(d->size() == 1);
  return (*d)[0].json;
}

TEST_CASE("yaml: the example cluster as manifests reads as its JSON") {
  StatusOr<Cluster> fromYaml = parseFile(testing::sourcePath("test/fixtures/yaml/examples_cluster.yaml"));
  StatusOr<Cluster> fromJson = parseFile(testing::sourcePath("examples/cluster.json"));
  REQUIRE_MESSAGE(fromYaml.isOk(), fromYaml.status().toString());
  REQUIRE(fromJson.isOk());
  CHECK(fromYaml->services.size() == 5);
  CHECK(fromYaml->slices.size() == 4);
  CHECK(testing::dumpAll(std::move(fromYaml)) == testing::dumpAll(std::move(fromJson)));
}

TEST_CASE("yaml: a List inside a List is flattened, as kubectl does") {
  StatusOr<Cluster> c = parseYamlText(R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Service, metadata: {name: web, namespace: ns}, spec: {clusterIP: 10.96.0.1}}
)");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  CHECK(c->errors.empty());
  REQUIRE(c->services.size() == 1);
  CHECK(c->services[0].meta.key() == "ns/web");
}

TEST_CASE("yaml: plain scalars resolve as kubectl's reader resolves them") {
  const std::string doc = R"(kind: Service
metadata: {name: s, namespace: ns}
spec:
  clusterIP: 10.96.0.1
  ports:
  - {name: a, port: 80, targetPort: web}
  - {name: b, port: 0x51, targetPort: 8_080}
  - {name: c, port: 0122, nodePort: ~}
  - {name: d, port: +83, protocol: UDP}
---
kind: EndpointSlice
addressType: IPv4
metadata:
  name: s-1
  namespace: ns
  labels: {kubernetes.io/service-name: s}
ports: [{name: a, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {ready: yes, serving: on, terminating: No}
- addresses: ["10.1.0.2"]
  conditions: {ready: False, serving: null, terminating: true}
)";
  StatusOr<Cluster> c = parseYamlText(doc);
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  REQUIRE(c->errors.empty());
  REQUIRE(c->services.size() == 1);
  const Service& s = c->services[0];
  REQUIRE(s.ports.size() == 4);
  CHECK(s.ports[0].port == 80);
  CHECK(s.ports[0].targetPort.isString);
  CHECK(s.ports[0].targetPort.text == "web");
  CHECK(s.ports[1].port == 81);             // hex
  CHECK(s.ports[1].targetPort.number == 8080);  // '_' separators
  CHECK(s.ports[2].port == 82);             // YAML 1.1 octal
  CHECK(s.ports[2].nodePort == 0);          // ~ is null: absent
  CHECK(s.ports[3].port == 83);
  CHECK(s.ports[3].protocol == "UDP");
  REQUIRE(c->slices.size() == 1);
  const EndpointSlice& es = c->slices[0];
  REQUIRE(es.endpoints.size() == 2);
  CHECK(es.endpoints[0].conditions.ready == std::optional<bool>(true));
  CHECK(es.endpoints[0].conditions.serving == std::optional<bool>(true));
  CHECK(es.endpoints[0].conditions.terminating == std::optional<bool>(false));
  CHECK(es.endpoints[1].conditions.ready == std::optional<bool>(false));
  CHECK_FALSE(es.endpoints[1].conditions.serving.has_value());
  CHECK(es.endpoints[1].addresses == StringList{"10.1.0.2"});
}

// Found by test/fuzz/yaml_fuzz.cc.
TEST_CASE("yaml: a plain scalar go-yaml reads as a string stays a string (kubectl get -o yaml writes it plain)") {
  // go-yaml v2 only tries numbers on scalars that start with a sign, a digit or '.':
  // `kubectl get -o yaml` writes the annotation value "_1" unquoted.
  StatusOr<Cluster> c = parseYamlText(
      "kind: Service\nmetadata:\n  name: a\n  annotations:\n    example.com/rev: _1\n    example.com/x: ._5\n"
      "    kipvs.io/note: _0x10\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  const std::string firstError = c->errors.empty() ? std::string() : c->errors[0].toString();
  CHECK_MESSAGE(c->errors.empty(), firstError);
  REQUIRE(c->services.size() == 1);
  REQUIRE(c->services[0].meta.annotation("kipvs.io/note"));
  CHECK(*c->services[0].meta.annotation("kipvs.io/note") == "_0x10");
  CHECK(jsonOf("v: _1\n") == R"({"v":"_1"})");
  CHECK(jsonOf("v: ._5\n") == R"({"v":"._5"})");
  CHECK(jsonOf("v: -_1\n") == R"({"v":-1})");  // after a sign go-yaml drops the '_'
}

TEST_CASE("yaml: numbers as go-yaml v2 (Go's ParseInt base 0, '_' dropped first) reads them") {
  CHECK(jsonOf("v: 0o120\n") == R"({"v":80})");   // was "0o120"
  CHECK(jsonOf("v: -0O17\n") == R"({"v":-15})");  // was "-0O17"
  CHECK(jsonOf("v: 0_\n") == R"({"v":0})");       // was 0.0
  CHECK(jsonOf("v: 0_x10\n") == R"({"v":16})");   // was "0_x10"
  CHECK(jsonOf("v: 1e_-5\n") == R"({"v":0.00001})");  // was "1e_-5"
  StatusOr<Cluster> c = parseYamlText("kind: Service\nmetadata: {name: o}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 0o120}]}\n");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  const std::string firstError = c->errors.empty() ? std::string() : c->errors[0].toString();
  REQUIRE_MESSAGE(c->errors.empty(), firstError);
  CHECK(c->services[0].ports[0].port == 80);
  // Unchanged: what the existing tests hold.
  CHECK(jsonOf("v: 0x51\n") == R"({"v":81})");
  CHECK(jsonOf("v: 8_080\n") == R"({"v":8080})");
  CHECK(jsonOf("v: 0122\n") == R"({"v":82})");
  CHECK(jsonOf("v: +83\n") == R"({"v":83})");
  CHECK(jsonOf("v: 80.5\n") == R"({"v":80.5})");
  CHECK(jsonOf("v: .inf\n") == R"({"v":".inf"})");
  CHECK(jsonOf("v: 2001-12-14\n") == R"({"v":"2001-12-14"})");
}

TEST_CASE("yaml: quoted, tagged and odd scalars keep the JSON parser's rules and name the document") {
  // A quoted number is a string: the Service is skipped with the JSON parser's message, named by document.
  std::string e = onlyError(parseYamlText("kind: List\nitems: []\n---\nkind: Service\nmetadata: {name: q}\n"
                                          "spec: {ports: [{port: \"80\"}]}\n"));
  CHECK(e.find("Service default/q: spec.ports[0].port: expected an integer, got string") == 0);
  CHECK(e.find("in.yaml document 2 (line 3)") != std::string::npos);
  // !!str makes a string of a number; !!int a number of a quoted one.
  e = onlyError(parseYamlText("kind: Service\nmetadata: {name: t}\nspec: {ports: [{port: !!str 80}]}\n"));
  CHECK(e.find("expected an integer, got string") != std::string::npos);
  StatusOr<Cluster> c = parseYamlText("kind: Service\nmetadata: {name: t}\nspec: {ports: [{port: !!int \"80\"}]}\n");
  REQUIRE(c.isOk());
  REQUIRE(c->errors.empty());
  CHECK(c->services[0].ports[0].port == 80);
  // A float is a number but not an integer.
  e = onlyError(parseYamlText("kind: Service\nmetadata: {name: f}\nspec: {ports: [{port: 80.5}]}\n"));
  CHECK(e.find("expected an integer, got number") != std::string::npos);
  // A block scalar is a string.
  c = parseYamlText("kind: Service\nmetadata:\n  name: b\n  annotations:\n    kipvs.io/note: |\n      line one\n      80\n"
                    "spec: {clusterIP: 10.96.0.2}\n");
  REQUIRE(c.isOk());
  REQUIRE(c->services.size() == 1);
  REQUIRE(c->services[0].meta.annotation("kipvs.io/note"));
  CHECK(*c->services[0].meta.annotation("kipvs.io/note") == "line one\n80\n");
}

TEST_CASE("yaml: documents merge in order, empty ones are skipped") {
  StatusOr<Cluster> c = parseYamlText(
      "---\n# nothing here\n---\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.1}\n---\n~\n---\n"
      "kind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.2}\n...\n");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  REQUIRE(c->services.size() == 1);
  CHECK(c->services[0].clusterIP == "10.96.0.2");  // the later document wins
}

TEST_CASE("yaml: what is refused, with file, line and column") {
  struct Case {
    std::string yaml, message;
  };
  for (const Case& k : std::vector<Case>{
           {"kind: Service\nmetadata: {name: a\n", "invalid YAML at line 3, column 1: while parsing a flow mapping"},
           {"kind: Service\nmetadata: {name: a}\nspec: *m\n", "invalid YAML at line 3, column 7: unknown anchor *m"},
           {"a: &s 5\nb:\n  <<: *s\n", "invalid YAML at line 3, column 7: a merge (<<) wants a mapping or a sequence of mappings"},
           {"a: &m {x: 1}\nb:\n  <<: [*m, 2]\n", "line 3, column 7: a merge (<<) wants a mapping or a sequence of mappings"},
           {"a: &n [1]\nb: {*n : 1}\n", "line 2, column 5: an alias used as a key must name a string (*n)"},
           {std::string(10001, '[') + std::string(10001, ']') + "\n", "nesting deeper than 10000 levels"},
           {"? [a, b]\n: c\n", "invalid YAML at line 1, column 3: a key that is a mapping or a sequence is not supported"},
           {"kind: Service\nmetadata: {name: !!bool maybe}\n", "tag tag:yaml.org,2002:bool does not fit \"maybe\""},
           {"kind: Service\nmetadata: {name: !custom x}\n", "tag !custom is not supported"},
           {"", "no YAML documents"},
           {"# only a comment\n---\n", "no YAML documents"},
           {"just a string\n", "document 1 (line 1): top-level JSON value is string"},
           // The reader's errors (bytes, not syntax) carry no mark: their place comes from the offset.
           {"kind: Service\nmetadata:\n  name: a\nspec:\n  type: \"x\xffy\"\n",
            "invalid YAML at line 5, column 11: invalid leading UTF-8 octet (byte 50)"},
           {"---\nkind: Service\n---\nmetadata: {name: \"a\x01b\"}\n",
            "invalid YAML at line 4, column 20: control characters are not allowed (byte 41)"},
       }) {
    CAPTURE(k.yaml);
    StatusOr<Cluster> c = parseYamlText(k.yaml);
    REQUIRE_FALSE(c.isOk());
    CHECK(c.status().code() == Code::kParse);
    CHECK_MESSAGE(c.status().message().find(k.message) != std::string::npos, c.status().message());
    CHECK(c.status().message().find("in.yaml") != std::string::npos);
  }
}

TEST_CASE("yaml: which inputs are YAML: by content, as kubectl decides, and *.json is JSON") {
  CHECK(isYamlInput("", "\n  kind: List\n"));
  CHECK(isYamlInput("a.yaml", "---\n{}"));
  CHECK(isYamlInput("", "# c\n{}"));
  CHECK_FALSE(isYamlInput("a.yaml", " \n{\"kind\": \"List\"}"));  // was YAML by its name
  CHECK_FALSE(isYamlInput("a.yml", "\t\r\n{}"));
  CHECK_FALSE(isYamlInput("", "[]"));
  CHECK_FALSE(isYamlInput("a.yaml", "\xEF\xBB\xBF{}"));
  CHECK(isYamlInput("", "\xEF\xBB\xBFkind: List"));
  // Not starting with '{': the name decides, else YAML.
  CHECK_FALSE(isYamlInput("a.json", "kind: List"));
  CHECK_FALSE(isYamlInput("a.json", "7"));
  CHECK(isYamlInput("a", "7"));
  // Blank: YAML's "no YAML documents" for a *.yaml file, else the JSON parser's error.
  CHECK(isYamlInput("a.yaml", ""));
  CHECK(isYamlInput("a.yml", " \n"));
  CHECK_FALSE(isYamlInput("dump", ""));
  CHECK_FALSE(isYamlInput("", " \n"));
}

TEST_CASE("yaml: JSON in a file named *.yaml is read as JSON (as kubectl reads -f)") {
  // A surrogate pair escape is one character to JSON, two lone surrogates to
  // a YAML reader.
  const std::string json = R"({"kind":"Service","metadata":{"name":"s","annotations":{"kipvs.io/note":"\ud83d\ude00"}},)"
                           R"("spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}})";
  for (const char* name : {"in.yaml", "in.yml", "in.json", "in"}) {
    CAPTURE(name);
    testing::TempFile f(json, name);
    StatusOr<Cluster> c = parseFile(f.path);
    REQUIRE_MESSAGE(c.isOk(), c.status().toString());
    REQUIRE(c->services.size() == 1);
    REQUIRE(c->services[0].meta.annotation("kipvs.io/note"));
    CHECK(*c->services[0].meta.annotation("kipvs.io/note") == "\xF0\x9F\x98\x80");
  }
}

TEST_CASE("yaml: a float with an integral value is the integer kubectl sends") {
  CHECK(jsonOf("v: 80.0\n") == R"({"v":80})");
  CHECK(jsonOf("v: 8e1\n") == R"({"v":80})");
  CHECK(jsonOf("v: !!float 80\n") == R"({"v":80})");
  CHECK(jsonOf("v: -0.0\n") == R"({"v":0})");
  CHECK(jsonOf("v: 1e300\n") == R"({"v":1e300})");
  StatusOr<Cluster> c = parseYamlText("kind: Service\nmetadata: {name: f}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80.0}]}\n");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  const std::string firstError = c->errors.empty() ? std::string() : c->errors[0].toString();
  REQUIRE_MESSAGE(c->errors.empty(), firstError);
  CHECK(c->services[0].ports[0].port == 80);
}

TEST_CASE("yaml: anchors, aliases and merge keys as go-yaml v2 reads them") {
  // An alias is a copy of its anchor's node; a later anchor of the same name replaces it.
  CHECK(jsonOf("a: &x {p: 80}\nb: *x\nc: &x 1\nd: *x\n") == R"({"a":{"p":80},"b":{"p":80},"c":1,"d":1})");
  CHECK(jsonOf("l: [&v 5, *v, *v]\n") == R"({"l":[5,5,5]})");
  // Anchors hold within their document.
  StatusOr<std::vector<YamlDocument>> two = yamlToJson("a: &x 1\n---\nb: *x\n", "t");
  REQUIRE_FALSE(two.isOk());
  CHECK(two.status().message().find("line 3, column 4: unknown anchor *x") != std::string::npos);
  CHECK(jsonOf("&k name: a\nother: *k\nm: {*k : b}\n") == R"({"name":"a","other":"name","m":{"name":"b"}})");
  // A merge sets the keys in place: a later key replaces a merged one, a merge replaces an earlier key.
  CHECK(jsonOf("d: &d {p: 80, q: 1}\nm:\n  <<: *d\n  q: 2\n") == R"({"d":{"p":80,"q":1},"m":{"p":80,"q":2}})");
  CHECK(jsonOf("d: &d {p: 80, q: 1}\nm:\n  q: 2\n  <<: *d\n") == R"({"d":{"p":80,"q":1},"m":{"q":1,"p":80}})");
  // Two merges: the later replaces; a key written out replaces either.
  CHECK(jsonOf("a: &a {p: 1}\nb: &b {p: 2}\nm:\n  <<: *a\n  <<: *b\n  p: 3\n") == R"({"a":{"p":1},"b":{"p":2},"m":{"p":3}})");
  // A sequence of mappings: the first one wins.
  CHECK(jsonOf("a: &a {p: 1}\nb: &b {p: 2, r: 3}\nm:\n  <<: [*a, *b]\n") ==
        R"({"a":{"p":1},"b":{"p":2,"r":3},"m":{"p":1,"r":3}})");
  // Inline, and tagged.
  CHECK(jsonOf("m: {<<: {p: 1}, q: 2}\n") == R"({"m":{"p":1,"q":2}})");
  CHECK(jsonOf("m: {!!merge <<: {p: 1}}\n") == R"({"m":{"p":1}})");
  // A quoted "<<" is an ordinary key.
  CHECK(jsonOf("m: {\"<<\": {p: 1}}\n") == R"({"m":{"<<":{"p":1}}})");
  // A large mapping (its keys indexed) merges the same way.
  std::string big = "d: &d {k7: seven, extra: 1}\nm:\n";
  for (int i = 0; i < 100; ++i) big += "  k" + std::to_string(i) + ": " + std::to_string(i) + "\n";
  big += "  <<: *d\n";
  const std::string j = jsonOf(big);
  CHECK(j.find(R"("k7":"seven")") != std::string::npos);
  CHECK(j.find(R"("k7":7)") == std::string::npos);
  CHECK(j.find(R"("k99":99,"extra":1})") != std::string::npos);

  // Services that share their ports through anchors, as people write them
  // (anchors hold within one document: a List here).
  StatusOr<Cluster> c = parseYamlText(R"(kind: List
items:
- kind: Service
  metadata: {name: a}
  spec:
    clusterIP: 10.96.0.1
    ports: &ports
    - {name: http, port: 80}
    - {name: https, port: 443}
- kind: Service
  metadata:
    name: b
    annotations: &ann {kipvs.io/scheduler: lc}
  spec: &spec
    clusterIP: 10.96.0.2
    ports: *ports
- kind: Service
  metadata: {name: c, annotations: *ann}
  spec:
    <<: *spec
    clusterIP: 10.96.0.3
)");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  const std::string firstError = c->errors.empty() ? std::string() : c->errors[0].toString();
  REQUIRE_MESSAGE(c->errors.empty(), firstError);
  REQUIRE(c->services.size() == 3);
  for (const auto& svc : c->services) {
    CAPTURE(svc.meta.name);
    REQUIRE(svc.ports.size() == 2);
    CHECK(svc.ports[1].port == 443);
  }
  CHECK(c->services[2].clusterIP == "10.96.0.3");
  REQUIRE(c->services[2].meta.annotation("kipvs.io/scheduler"));
  CHECK(*c->services[2].meta.annotation("kipvs.io/scheduler") == "lc");
}

TEST_CASE("yaml: a key written twice stays twice; a field kipvs reads, given twice, fails its object") {
  CHECK(jsonOf("a: 1\nb: 2\na: 3\n") == R"({"a":1,"b":2,"a":3})");
  std::string big = "m:\n";
  for (int i = 0; i < 40; ++i) big += "  k" + std::to_string(i) + ": " + std::to_string(i) + "\n";
  big += "  k3: x\n";
  CHECK(jsonOf(big).find(R"("k39":39,"k3":"x"})") != std::string::npos);
  StatusOr<Cluster> c = parseYamlText(R"(kind: List
items:
- kind: Service
  metadata: {name: twice}
  spec:
    clusterIP: 10.96.0.1
    clusterIP: 10.96.0.2
    ports: [{port: 80}]
- kind: Service
  metadata: {name: fine, labels: {app: a, app: b}}
  spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}
)");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  REQUIRE(c->services.size() == 1);
  CHECK(c->services[0].meta.name == "fine");  // a label kipvs does not read may repeat
  REQUIRE(c->errors.size() == 1);
  CHECK(c->errors[0].toString().find("Service default/twice: spec.clusterIP: given twice") == 0);
}

TEST_CASE("yaml: JSON with keys given twice reads the same as YAML as it does as JSON") {
  // (Not 053-errs-every-kind-of-wrong: its "port": 1.0 is the integer 1 to YAML, as to kubectl's YAML reader.)
  for (const char* fixture : {"test/fixtures/parser/075-annotations.json", "test/fixtures/parser/076-dup-keys.json"}) {
    CAPTURE(fixture);
    std::ifstream in(testing::sourcePath(fixture));
    std::stringstream text;
    text << in.rdbuf();
    StatusOr<Cluster> asJson = parseJson(text.str(), "<json>");
    testing::TempFile y("# read as YAML\n" + text.str(), "f.yaml");
    StatusOr<Cluster> asYaml = parseFile(y.path);
    REQUIRE(asJson.isOk());
    REQUIRE_MESSAGE(asYaml.isOk(), asYaml.status().toString());
    // Messages name "<json> items[i]" and "<path> document 1 (line 2) items[i]": compare without the source.
    auto strip = [](std::string d, const std::string& source) {
      for (size_t at; (at = d.find(source)) != std::string::npos;) d.erase(at, source.size());
      return d;
    };
    CHECK(strip(testing::dumpAll(std::move(asYaml)), y.path + " document 1 (line 2)") ==
          strip(testing::dumpAll(std::move(asJson)), "<json>"));
  }
}

TEST_CASE("yaml: aliases that expand past what the document holds are refused (billion laughs)") {
  std::string laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    const char prev = static_cast<char>(c - 1);
    laughs += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) laughs += std::string(i ? ", " : "") + "*" + prev;
    laughs += "]\n";
  }
  StatusOr<std::vector<YamlDocument>> d = yamlToJson(laughs, "laughs.yaml");
  REQUIRE_FALSE(d.isOk());
  CHECK(d.status().message().find("aliases expand to more values than the document holds") != std::string::npos);
  // Modest reuse is fine: 10 x 10 x 10 values from a handful of lines.
  std::string modest = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
  CHECK(yamlToJson(modest, "modest.yaml").isOk());
}

}  // namespace
}  // namespace kipvs::controller
