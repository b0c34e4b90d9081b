#pragma once
// Small builders for kubectl-style JSON, and a text rendering of Desired, so
// that desired() cases read as "these objects -> these virtual servers".

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "controller/desired.h"
#include "controller/k8s.h"

namespace kipvs::controller::testing {

// A file of the source tree (fixtures, examples), wherever the tests run
// from: -DKIPVS_SOURCE_DIR, else $KIPVS_SOURCE_DIR, else the tree this header
// was compiled from (__FILE__, relative to the build directory under meson),
// else the current directory.
inline std::string sourcePath(const std::string& rel) {
  std::vector<std::string> roots;
#ifdef KIPVS_SOURCE_DIR
  roots.push_back(KIPVS_SOURCE_DIR);
#endif
  if (const char* env = std::getenv("KIPVS_SOURCE_DIR")) roots.push_back(env);
  std::string self = __FILE__;
  const std::string tail = "test/controller/k8s_json.h";
  if (self.size() >= tail.size() && self.compare(self.size() - tail.size(), tail.size(), tail) == 0) {
    std::string root = self.substr(0, self.size() - tail.size());
    roots.push_back(root.empty() ? "." : root);
  }
  roots.push_back(".");
  for (const auto& r : roots) {
    std::string p = r + (r.empty() || r.back() == '/' ? "" : "/") + rel;
    if (::access(p.c_str(), R_OK) == 0) return p;
  }
  return rel;
}

// {"kind":"Service", metadata: {namespace, name <meta>}, spec: {<spec>}, status: {<status>}}
// name is "namespace/name"; meta and status are extra JSON members (no braces).
inline std::string service(const std::string& nsName, const std::string& spec, const std::string& meta = "",
                           const std::string& status = "") {
  size_t slash = nsName.find('/');
  std::string out = R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":")" + nsName.substr(0, slash) +
                    R"(","name":")" + nsName.substr(slash + 1) + "\"" + (meta.empty() ? "" : "," + meta) +
                    R"(},"spec":{)" + spec + "}";
  if (!status.empty()) out += R"(,"status":{)" + status + "}";
  return out + "}";
}

// An EndpointSlice of "namespace/service": ports and endpoints are JSON arrays.
inline std::string slice(const std::string& nsName, const std::string& service, const std::string& addressType,
                         const std::string& ports, const std::string& endpoints, const std::string& meta = "") {
  size_t slash = nsName.find('/');
  return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"namespace":")" +
         nsName.substr(0, slash) + R"(","name":")" + nsName.substr(slash + 1) +
         R"(","labels":{"kubernetes.io/service-name":")" + service + "\"}" + (meta.empty() ? "" : "," + meta) +
         R"(},"addressType":")" + addressType + R"(","ports":)" + ports + R"(,"endpoints":)" + endpoints + "}";
}

// One endpoint: {"addresses":[addr], <extra>}
inline std::string ep(const std::string& addr, const std::string& extra = "") {
  return R"({"addresses":[")" + addr + "\"]" + (extra.empty() ? "" : "," + extra) + "}";
}

inline std::string list(const std::vector<std::string>& items) {
  std::string out = R"({"apiVersion":"v1","kind":"List","items":[)";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]}";
}

// A file named `name` in a fresh temporary directory, removed with it.
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content, const std::string& name = "in.json") {
    char dir[] = "/tmp/kipvs-test-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    path = std::string(dir) + "/" + name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    ::close(fd);
  }
  ~TempFile() {
    ::unlink(path.c_str());
    ::rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

inline Cluster parseOk(const std::string& json) {
  StatusOr<Cluster> c = parseJson(json, "test.json");
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  return std::move(*c);
}

inline NodeFacts nodeA() {
  NodeFacts n;
  n.nodeName = "node-a";
  n.zone = "zone-a";
  n.nodeIps.push_back(*ipvs::Address::parse("198.51.100.10"));
  return n;
}

// "TCP 10.96.0.1:80 rr -> 10.244.0.1:8080 w1, 10.244.0.2:8080 w1", plus
// " flags=0x1 timeout=10800" when set. One line per virtual server, in table order.
inline std::vector<std::string> render(const Desired& d) {
  std::vector<std::string> out;
  for (const auto& [k, s] : d.table.services) {
    std::string line = k.toString() + " " + s.spec.scheduler;
    if (s.spec.flags) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), " flags=0x%x", s.spec.flags);
      line += buf;
    }
    if (s.spec.timeout) line += " timeout=" + std::to_string(s.spec.timeout);
    line += " ->";
    bool first = true;
    for (const auto& [dk, ds] : s.dests) {
      line += (first ? " " : ", ") + dk.toString() + " w" + std::to_string(ds.spec.weight);
      first = false;
    }
    out.push_back(line);
  }
  return out;
}

inline std::vector<std::string> errorStrings(const Desired& d) {
  std::vector<std::string> out;
  for (const auto& e : d.errors) out.push_back(e.toString());
  return out;
}

inline std::vector<std::string> vipStrings(const Desired& d) {
  std::vector<std::string> out;
  for (const auto& a : d.vips) out.push_back(a.toString());
  return out;
}

inline Desired compute(const std::vector<std::string>& items, const NodeFacts& node = nodeA()) {
  return computeDesired(parseOk(list(items)), node);
}

}  // namespace kipvs::controller::testing
