#include "controller/k8s.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "controller/helper_thread.h"
#include "controller/item_builder.h"
#include "controller/json_scan.h"
#include "controller/yaml.h"

namespace kipvs::controller {

const std::string* findIn(const StringMap& m, std::string_view key) {
  for (const auto& [k, value] : m) {
    if (k == key) return &value;
  }
  return nullptr;
}

bool isKeptLabel(std::string_view key) {
  return key == kLabelServiceName || key.starts_with("service.kubernetes.io/");
}
bool isKeptAnnotation(std::string_view key) { return key.starts_with("kipvs.io/"); }

const std::string* ObjectMeta::label(std::string_view k) const { return findIn(labels, k); }
const std::string* ObjectMeta::annotation(std::string_view k) const { return findIn(annotations, k); }

std::string_view EndpointSlice::serviceName() const {
  const std::string* s = meta.label(kLabelServiceName);
  return s ? std::string_view(*s) : std::string_view();
}

const char* serviceTypeName(ServiceType t) {
  switch (t) {
    case ServiceType::kClusterIP:
      return "ClusterIP";
    case ServiceType::kNodePort:
      return "NodePort";
    case ServiceType::kLoadBalancer:
      return "LoadBalancer";
    case ServiceType::kExternalName:
      return "ExternalName";
  }
  return "?";
}

std::optional<ServiceType> serviceTypeOf(std::string_view s) {
  if (s.empty() || s == "ClusterIP") return ServiceType::kClusterIP;
  if (s == "NodePort") return ServiceType::kNodePort;
  if (s == "LoadBalancer") return ServiceType::kLoadBalancer;
  if (s == "ExternalName") return ServiceType::kExternalName;
  return std::nullopt;
}

std::optional<TrafficPolicy> trafficPolicyOf(std::string_view s) {
  if (s.empty() || s == "Cluster") return TrafficPolicy::kCluster;
  if (s == "Local") return TrafficPolicy::kLocal;
  return std::nullopt;
}

std::optional<SessionAffinity> sessionAffinityOf(std::string_view s) {
  if (s.empty() || s == "None") return SessionAffinity::kNone;
  if (s == "ClientIP") return SessionAffinity::kClientIP;
  return std::nullopt;
}

std::optional<AddressType> addressTypeOf(std::string_view s) {
  if (s == "IPv4") return AddressType::kIPv4;
  if (s == "IPv6") return AddressType::kIPv6;
  if (s == "FQDN") return AddressType::kFqdn;
  return std::nullopt;
}

namespace {

using rapidjson::Value;

// A JSON path as a chain of stack frames, rendered only when an error needs
// it: building "endpoints[17].conditions" for every field would cost an
// allocation per field on the hot path.
struct Path {
  const Path* parent = nullptr;
  std::string_view name;  // member name, or empty for an array element
  int64_t index = -1;

  Path member(std::string_view n) const { return Path{this, n, -1}; }
  Path element(size_t i) const { return Path{this, {}, static_cast<int64_t>(i)}; }

  std::string toString() const {
    std::string head = parent ? parent->toString() : std::string();
    if (index >= 0) return head + "[" + std::to_string(index) + "]";
    if (name.empty()) return head;
    return head.empty() ? std::string(name) : head + "." + std::string(name);
  }
};

const char* typeName(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "boolean";
    case rapidjson::kObjectType:
      return "object";
    case rapidjson::kArrayType:
      return "array";
    case rapidjson::kStringType:
      return "string";
    case rapidjson::kNumberType:
      return "number";
  }
  return "?";
}

std::string str(const Value& v) { return std::string(v.GetString(), v.GetStringLength()); }
std::string_view view(const Value& v) { return std::string_view(v.GetString(), v.GetStringLength()); }

// Reads fields of one object, keeping the first structural error. Absent and
// null members both read as "not set", as in the Kubernetes API.
class Reader {
 public:
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  void fail(const Path& p, std::string what) {
    if (error_.empty()) error_ = p.toString() + ": " + std::move(what);
  }
  void wrongType(const Path& p, const char* want, const Value& got) {
    fail(p, std::string("expected ") + want + ", got " + typeName(got));
  }

  // The member (the first of that name), or nullptr when absent or null.
  // *repeated, when asked for, says whether the name is there more than once.
  static const Value* get(const Value& obj, std::string_view name, bool* repeated = nullptr) {
    const Value key(rapidjson::StringRef(name.data(), name.size()));
    auto it = obj.FindMember(key);
    if (it == obj.MemberEnd()) return nullptr;
    if (repeated) {
      for (auto later = it + 1; later != obj.MemberEnd() && !*repeated; ++later) *repeated = later->name == key;
    }
    return it->value.IsNull() ? nullptr : &it->value;
  }

  // get() of a field kipvs reads: one given twice fails the object, as
  // kubectl's strict reading (its default) refuses it. Which was meant?
  const Value* member(const Value& obj, std::string_view name, const Path& p) {
    bool repeated = false;
    const Value* v = get(obj, name, &repeated);
    if (!repeated) return v;
    fail(p.member(name), "given twice");
    return nullptr;
  }

  const Value* object(const Value& obj, std::string_view name, const Path& p) {
    const Value* v = member(obj, name, p);
    if (v && !v->IsObject()) {
      wrongType(p.member(name), "an object", *v);
      return nullptr;
    }
    return v;
  }

  const Value* array(const Value& obj, std::string_view name, const Path& p) {
    const Value* v = member(obj, name, p);
    if (v && !v->IsArray()) {
      wrongType(p.member(name), "an array", *v);
      return nullptr;
    }
    return v;
  }

  // Out: a std::string or a ShortString.
  template <typename Out>
  void string(const Value& obj, std::string_view name, Out& out, const Path& p) {
    const Value* v = member(obj, name, p);
    if (!v) return;
    if (!v->IsString()) return wrongType(p.member(name), "a string", *v);
    out.assign(std::string_view(v->GetString(), v->GetStringLength()));
  }

  void optString(const Value& obj, std::string_view name, std::optional<std::string>& out, const Path& p) {
    const Value* v = member(obj, name, p);
    if (!v) return;
    if (!v->IsString()) return wrongType(p.member(name), "a string", *v);
    out.emplace(v->GetString(), v->GetStringLength());
  }

  void integer(const Value& obj, std::string_view name, int64_t& out, const Path& p) {
    const Value* v = member(obj, name, p);
    if (!v) return;
    if (!v->IsInt64()) return wrongType(p.member(name), "an integer", *v);
    out = v->GetInt64();
  }

  void optInteger(const Value& obj, std::string_view name, std::optional<int64_t>& out, const Path& p) {
    const Value* v = member(obj, name, p);
    if (!v) return;
    if (!v->IsInt64()) return wrongType(p.member(name), "an integer", *v);
    out = v->GetInt64();
  }

  void optBool(const Value& obj, std::string_view name, std::optional<bool>& out, const Path& p) {
    const Value* v = member(obj, name, p);
    if (!v) return;
    if (!v->IsBool()) return wrongType(p.member(name), "a boolean", *v);
    out = v->GetBool();
  }

  template <class List>  // std::vector<std::string> or StringList
  void stringList(const Value& obj, std::string_view name, List& out, const Path& p) {
    const Value* arr = array(obj, name, p);
    if (!arr) return;
    Path ap = p.member(name);
    out.reserve(arr->Size());
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
      const Value& e = (*arr)[i];
      if (!e.IsString()) return wrongType(ap.element(i), "a string", e);
      out.push_back(std::string(e.GetString(), e.GetStringLength()));
    }
  }

  // Labels or annotations: every value a string, the entries `kept` names kept.
  void stringMap(const Value& obj, std::string_view name, StringMap& out, const Path& p,
                 bool (*kept)(std::string_view)) {
    const Value* m = object(obj, name, p);
    if (!m) return;
    Path mp = p.member(name);
    for (auto it = m->MemberBegin(); it != m->MemberEnd(); ++it) {
      if (!it->value.IsString()) return wrongType(mp.member(view(it->name)), "a string", it->value);
      if (!kept(view(it->name))) continue;
      if (findIn(out, view(it->name))) return fail(mp.member(view(it->name)), "given twice");
      out.emplace_back(str(it->name), str(it->value));
    }
  }

  // hints.forZones / hints.forNodes: [{"name": "..."}]
  void nameList(const Value& obj, std::string_view name, std::vector<std::string>& out, const Path& p) {
    const Value* arr = array(obj, name, p);
    if (!arr) return;
    Path ap = p.member(name);
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
      const Value& e = (*arr)[i];
      if (!e.IsObject()) return wrongType(ap.element(i), "an object", e);
      std::string n;
      string(e, "name", n, ap.element(i));
      out.push_back(std::move(n));
    }
  }

  void meta(const Value& obj, ObjectMeta& m) {
    Path root;
    const Value* md = object(obj, "metadata", root);
    if (!ok()) return;
    if (!md) return fail(root.member("metadata"), "missing");
    Path mp = root.member("metadata");
    string(*md, "name", m.name, mp);
    string(*md, "namespace", m.ns, mp);
    stringMap(*md, "labels", m.labels, mp, isKeptLabel);
    stringMap(*md, "annotations", m.annotations, mp, isKeptAnnotation);
    if (ok() && m.name.empty()) fail(mp.member("name"), "missing");
    // kubectl always prints the namespace; hand-written fixtures may not.
    if (m.ns.empty()) m.ns = "default";
  }

 private:
  std::string error_;
};

// Best-effort "namespace/name" of an object we could not fully read, for the
// error message.
// An item's (namespace, name) for error messages; name "" when it has none
// (the caller names it by its position).
// A namespace that is there but not a string is kUnknownNamespace: the
// object may be in any namespace, not in "default".
std::pair<std::string, std::string> objectName(const Value& obj) {
  std::string ns = "default", name;
  if (const Value* md = Reader::get(obj, "metadata"); md && md->IsObject()) {
    if (const Value* n = Reader::get(*md, "name"); n && n->IsString()) name = str(*n);
    bool twice = false;
    if (const Value* n = Reader::get(*md, "namespace", &twice); twice || (n && !n->IsNull() && !n->IsString())) {
      ns = std::string(kUnknownNamespace);
    } else if (n && n->IsString() && n->GetStringLength()) {
      ns = str(*n);
    }
  } else if (Reader::get(obj, "metadata")) {
    ns = std::string(kUnknownNamespace);
  }
  return {ns, name};
}

void parsePolicy(Reader& r, const Value& spec, std::string_view field, TrafficPolicy& out, const Path& p) {
  std::string s;
  r.string(spec, field, s, p);
  if (auto policy = trafficPolicyOf(s)) {
    out = *policy;
  } else {
    r.fail(p.member(field), "unknown traffic policy \"" + s + "\"");
  }
}

void parseService(Reader& r, const Value& obj, Service& svc) {
  r.meta(obj, svc.meta);
  Path root;
  const Value* spec = r.object(obj, "spec", root);
  if (spec) {
    Path sp = root.member("spec");
    std::string type;
    r.string(*spec, "type", type, sp);
    if (auto t = serviceTypeOf(type)) {
      svc.type = *t;
    } else {
      r.fail(sp.member("type"), "unknown Service type \"" + type + "\"");
    }
    r.string(*spec, "clusterIP", svc.clusterIP, sp);
    r.stringList(*spec, "clusterIPs", svc.clusterIPs, sp);
    r.stringList(*spec, "ipFamilies", svc.ipFamilies, sp);
    if (const Value* ports = r.array(*spec, "ports", sp)) {
      Path pp = sp.member("ports");
      svc.ports.reserve(ports->Size());
      for (rapidjson::SizeType i = 0; i < ports->Size() && r.ok(); ++i) {
        const Value& pv = (*ports)[i];
        Path ep = pp.element(i);
        if (!pv.IsObject()) {
          r.wrongType(ep, "an object", pv);
          break;
        }
        ServicePort port;
        r.string(pv, "name", port.name, ep);
        r.string(pv, "protocol", port.protocol, ep);
        if (!Reader::get(pv, "port")) r.fail(ep.member("port"), "missing");
        r.integer(pv, "port", port.port, ep);
        r.integer(pv, "nodePort", port.nodePort, ep);
        if (const Value* tp = r.member(pv, "targetPort", ep)) {
          if (tp->IsInt64()) {
            port.targetPort.number = tp->GetInt64();
          } else if (tp->IsString()) {
            port.targetPort.isString = true;
            port.targetPort.text = str(*tp);
          } else {
            r.wrongType(ep.member("targetPort"), "an integer or a string", *tp);
          }
        }
        svc.ports.push_back(std::move(port));
      }
    }
    r.stringList(*spec, "externalIPs", svc.externalIPs, sp);
    std::string affinity;
    r.string(*spec, "sessionAffinity", affinity, sp);
    if (auto a = sessionAffinityOf(affinity)) {
      svc.sessionAffinity = *a;
    } else {
      r.fail(sp.member("sessionAffinity"), "unknown session affinity \"" + affinity + "\"");
    }
    if (const Value* sac = r.object(*spec, "sessionAffinityConfig", sp)) {
      Path cp = sp.member("sessionAffinityConfig");
      if (const Value* cip = r.object(*sac, "clientIP", cp)) {
        r.optInteger(*cip, "timeoutSeconds", svc.affinityTimeoutSeconds, cp.member("clientIP"));
      }
    }
    parsePolicy(r, *spec, "externalTrafficPolicy", svc.externalTrafficPolicy, sp);
    parsePolicy(r, *spec, "internalTrafficPolicy", svc.internalTrafficPolicy, sp);
    r.integer(*spec, "healthCheckNodePort", svc.healthCheckNodePort, sp);
    r.string(*spec, "externalName", svc.externalName, sp);
    r.string(*spec, "trafficDistribution", svc.trafficDistribution, sp);
    r.stringList(*spec, "loadBalancerSourceRanges", svc.loadBalancerSourceRanges, sp);
  }
  if (const Value* status = r.object(obj, "status", root)) {
    Path st = root.member("status");
    if (const Value* lb = r.object(*status, "loadBalancer", st)) {
      Path lp = st.member("loadBalancer");
      if (const Value* ing = r.array(*lb, "ingress", lp)) {
        Path ip = lp.member("ingress");
        for (rapidjson::SizeType i = 0; i < ing->Size() && r.ok(); ++i) {
          const Value& iv = (*ing)[i];
          if (!iv.IsObject()) {
            r.wrongType(ip.element(i), "an object", iv);
            break;
          }
          LoadBalancerIngress in;
          r.string(iv, "ip", in.ip, ip.element(i));
          r.string(iv, "hostname", in.hostname, ip.element(i));
          r.string(iv, "ipMode", in.ipMode, ip.element(i));
          svc.lbIngress.push_back(std::move(in));
        }
      }
    }
  }
}

void parseSlice(Reader& r, const Value& obj, EndpointSlice& es) {
  r.meta(obj, es.meta);
  Path root;
  std::string at;
  r.string(obj, "addressType", at, root);
  if (auto t = addressTypeOf(at)) {
    es.addressType = *t;
  } else if (at.empty()) {
    r.fail(root.member("addressType"), "missing");
  } else {
    r.fail(root.member("addressType"), "unknown address type \"" + at + "\"");
  }
  if (const Value* ports = r.array(obj, "ports", root)) {
    Path pp = root.member("ports");
    es.ports.reserve(ports->Size());
    for (rapidjson::SizeType i = 0; i < ports->Size() && r.ok(); ++i) {
      const Value& pv = (*ports)[i];
      if (!pv.IsObject()) {
        r.wrongType(pp.element(i), "an object", pv);
        break;
      }
      EndpointPort port;
      r.optString(pv, "name", port.name, pp.element(i));
      r.string(pv, "protocol", port.protocol, pp.element(i));
      r.optInteger(pv, "port", port.port, pp.element(i));
      es.ports.push_back(std::move(port));
    }
  }
  if (const Value* eps = r.array(obj, "endpoints", root)) {
    Path epp = root.member("endpoints");
    es.endpoints.reserve(eps->Size());
    for (rapidjson::SizeType i = 0; i < eps->Size() && r.ok(); ++i) {
      const Value& ev = (*eps)[i];
      Path ep = epp.element(i);
      if (!ev.IsObject()) {
        r.wrongType(ep, "an object", ev);
        break;
      }
      Endpoint e;
      r.stringList(ev, "addresses", e.addresses, ep);
      if (const Value* c = r.object(ev, "conditions", ep)) {
        Path cp = ep.member("conditions");
        r.optBool(*c, "ready", e.conditions.ready, cp);
        r.optBool(*c, "serving", e.conditions.serving, cp);
        r.optBool(*c, "terminating", e.conditions.terminating, cp);
      }
      r.string(ev, "nodeName", e.nodeName, ep);
      r.string(ev, "zone", e.zone, ep);
      if (const Value* h = r.object(ev, "hints", ep)) {
        Path hp = ep.member("hints");
        r.nameList(*h, "forZones", e.hints.mut().forZones, hp);
        r.nameList(*h, "forNodes", e.hints.mut().forNodes, hp);
      }
      es.endpoints.push_back(std::move(e));
    }
  }
}

// Index of (kind, namespace/name) -> position, so that a repeated object
// replaces the earlier one instead of appearing twice. The index holds
// positions and hashes the objects' own names: no "namespace/name" string is
// built per object.
class Collector {
 public:
  // kUnique: a later object of the same kind and name replaces the earlier
  // one, in its place. kAll: every object is kept, in order (a chunk of a
  // List's items parsed by the second thread, added to the List's Collector
  // afterwards, which settles duplicates exactly as if it had seen them one
  // by one).
  enum class Names : bool { kUnique, kAll };
  explicit Collector(Cluster& c, Names names = Names::kUnique)
      : cluster_(c),
        unique_(names == Names::kUnique),
        services_{Index<Service>(0, ByName<Service>{&c.services}, ByName<Service>{&c.services})},
        slices_{Index<EndpointSlice>(0, ByName<EndpointSlice>{&c.slices}, ByName<EndpointSlice>{&c.slices})} {
    if (!unique_) return;
    startIndex(c.services, services_);
    startIndex(c.slices, slices_);
  }
  // Room for the objects of an items array this many bytes long, so that the
  // vectors do not grow by doubling (each step moves every object into fresh
  // memory). Sized for small objects: pages reserved and never touched cost
  // nothing.
  void reserveFor(size_t bytes) {
    const size_t n = std::min<size_t>(bytes / kMinItemBytes, kMaxReserve);
    cluster_.services.reserve(cluster_.services.size() + n);
    cluster_.slices.reserve(cluster_.slices.size() + n);
  }
  void add(Service&& s) { add(cluster_.services, services_, std::move(s)); }
  void add(EndpointSlice&& s) { add(cluster_.slices, slices_, std::move(s)); }

 private:
  // Hashes and compares positions in *v by the objects' namespace and name.
  template <typename T>
  struct ByName {
    const std::vector<T>* v;
    size_t operator()(size_t i) const {
      const ObjectMeta& m = (*v)[i].meta;
      const size_t h = std::hash<std::string_view>()(m.ns);
      return h ^ (std::hash<std::string_view>()(m.name) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    }
    bool operator()(size_t a, size_t b) const {
      const ObjectMeta& x = (*v)[a].meta;
      const ObjectMeta& y = (*v)[b].meta;
      return x.name == y.name && x.ns == y.ns;
    }
  };
  template <typename T>
  using Index = std::unordered_set<size_t, ByName<T>, ByName<T>>;

  // Objects in strictly increasing "namespace/name" order, byte by byte, as
  // the API server lists them (its storage keys) and so kubectl, cannot
  // repeat one another: the index is built only once an object comes out of
  // that order (from every object so far), and never for kubectl's output.
  // Hashing 20,000 names and merging the second thread's into the first's
  // cost the parse tens of milliseconds under qemu. (By the key, a namespace
  // that is a prefix of another sorts after it: "app-staging/x" < "app/x".)
  template <typename T>
  struct NameIndex {
    Index<T> index;
    bool indexed = false;
  };

  template <typename T>
  static bool before(const T& a, const T& b) {
    const ObjectMeta& x = a.meta;
    const ObjectMeta& y = b.meta;
    if (x.ns == y.ns) return x.name < y.name;
    // x.ns + "/" + x.name against y.ns + "/" + y.name, without building them.
    auto at = [](const ObjectMeta& m, size_t i) -> unsigned char {
      if (i < m.ns.size()) return static_cast<unsigned char>(m.ns[i]);
      if (i == m.ns.size()) return '/';
      return static_cast<unsigned char>(m.name[i - m.ns.size() - 1]);
    };
    const size_t xn = x.ns.size() + 1 + x.name.size(), yn = y.ns.size() + 1 + y.name.size();
    for (size_t i = 0; i < std::min(xn, yn); ++i) {
      if (at(x, i) != at(y, i)) return at(x, i) < at(y, i);
    }
    return xn < yn;
  }

  template <typename T>
  static void buildIndex(const std::vector<T>& v, NameIndex<T>& names) {
    names.indexed = true;
    names.index.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) names.index.insert(i);
  }

  // Objects already there (a Cluster merged into): indexed unless in order.
  template <typename T>
  static void startIndex(const std::vector<T>& v, NameIndex<T>& names) {
    for (size_t i = 1; i < v.size(); ++i) {
      if (!before(v[i - 1], v[i])) return buildIndex(v, names);
    }
  }

  template <typename T>
  void add(std::vector<T>& v, NameIndex<T>& names, T&& obj) {
    if (unique_ && !names.indexed && !v.empty() && !before(v.back(), obj)) buildIndex(v, names);
    v.push_back(std::move(obj));
    if (!unique_ || !names.indexed) return;
    auto [it, inserted] = names.index.insert(v.size() - 1);
    if (!inserted) {  // seen before: the later copy wins, in the earlier one's place
      v[*it] = std::move(v.back());
      v.pop_back();
    }
  }

  static constexpr size_t kMinItemBytes = 1024, kMaxReserve = size_t{1} << 20;
  Cluster& cluster_;
  bool unique_;
  NameIndex<Service> services_;
  NameIndex<EndpointSlice> slices_;
};

// Why one item was skipped, before its position is known: a parser working
// on a later chunk of a List learns its items' indices only at the end.
struct ItemError {
  std::string kind;
  std::string ns, name;  // name "" when the item has none
  std::string message;
  bool notObject = false;  // the item is not even an object
  std::string below = {};  // in a List inside the List: " items[<j>]", where in the item

  // where: "<source> items[<i>]" (or "<source>" for a single object).
  ObjectError finish(const std::string& where) const {
    const std::string at = where + below;
    std::string placeholder = "<" + at + ">";
    if (notObject) return {kind, placeholder, message};
    return {kind, ns + "/" + (name.empty() ? placeholder : name), message + " (" + at + ")"};
  }
};

using detail::isListKind;

// "ServiceList" -> "Service"; "List" -> "" (items carry their kind).
std::string_view itemKindOf(std::string_view listKind) {
  listKind.remove_suffix(4);
  return listKind;
}

std::string itemWhere(std::string_view source, int64_t index) {
  return std::string(source) + (index >= 0 ? " items[" + std::to_string(index) + "]" : "");
}

// One item into out; the reason when it is skipped.
std::optional<ItemError> parseItem(const Value& item, std::string_view defaultKind, Collector& out) {
  if (!item.IsObject()) return ItemError{"?", "", "", std::string("item is ") + typeName(item) + ", not an object", true};
  std::string_view kind = defaultKind;
  auto fail = [&](std::string k, std::string message) {
    auto [ns, name] = objectName(item);
    return ItemError{std::move(k), std::move(ns), std::move(name), std::move(message)};
  };
  bool kindTwice = false;
  if (const Value* k = Reader::get(item, "kind", &kindTwice)) {
    if (kindTwice) return fail("?", "kind: given twice");
    if (!k->IsString()) return fail("?", "kind is not a string");
    kind = view(*k);
  }
  if (kind.empty()) return fail("?", "item has no kind");
  // The kind is read in its API group: a Service of another group (Knative's
  // serving.knative.dev) is another resource, not ours; no apiVersion at all
  // (a typed List's items) is the one kipvs reads.
  if (kind == "Service" || kind == "EndpointSlice") {
    bool versionTwice = false;
    const Value* v = Reader::get(item, "apiVersion", &versionTwice);
    if (versionTwice) return fail(std::string(kind), "apiVersion: given twice");
    if (v && !v->IsNull()) {
      if (!v->IsString()) return fail(std::string(kind), "apiVersion is not a string");
      const std::string_view version = view(*v);
      if (kind == "EndpointSlice" && version == "discovery.k8s.io/v1beta1") {
        return fail(std::string(kind), "apiVersion discovery.k8s.io/v1beta1 is not read (no longer served since "
                                        "Kubernetes 1.25: kubectl gets discovery.k8s.io/v1)");
      }
      if (version != (kind == "Service" ? "v1" : "discovery.k8s.io/v1")) return std::nullopt;  // not ours
    }
  }
  Reader r;
  if (kind == "Service") {
    Service s;
    parseService(r, item, s);
    if (r.ok()) {
      out.add(std::move(s));
      return std::nullopt;
    }
  } else if (kind == "EndpointSlice") {
    EndpointSlice s;
    parseSlice(r, item, s);
    if (r.ok()) {
      out.add(std::move(s));
      return std::nullopt;
    }
  } else {
    return std::nullopt;  // Pods, Endpoints, ...: not ours
  }
  return fail(std::string(kind), r.error());
}

// parseItem, with a List inside the List flattened as kubectl's
// FlattenListVisitor does: its items are read as the outer List's own (not
// dropped as a kind kipvs does not read, which would delete what they
// program). onError(ItemError&&) gets each skipped object's reason.
template <typename OnError>
void parseItemFlattened(const Value& item, std::string_view defaultKind, Collector& out, const OnError& onError,
                        const std::string& below = {}) {
  std::string_view kind = defaultKind;
  bool kindTwice = false;
  if (item.IsObject()) {
    const Value* k = Reader::get(item, "kind", &kindTwice);
    if (k && k->IsString()) kind = view(*k);
  }
  if (kindTwice || !isListKind(kind)) {
    if (auto e = parseItem(item, defaultKind, out)) {
      e->below = below;
      onError(std::move(*e));
    }
    return;
  }
  bool itemsTwice = false;
  const Value* items = Reader::get(item, "items", &itemsTwice);
  auto listError = [&](std::string message) {
    auto [ns, name] = objectName(item);
    onError(ItemError{std::string(kind), std::move(ns), std::move(name), std::move(message), false, below});
  };
  if (itemsTwice) return listError("items: given twice");
  if (!items || items->IsNull()) return;
  if (!items->IsArray()) return listError(std::string("items is ") + typeName(*items) + ", not an array");
  const std::string_view itemKind = itemKindOf(kind);
  for (rapidjson::SizeType i = 0; i < items->Size(); ++i) {
    parseItemFlattened((*items)[i], itemKind, out, onError, below + " items[" + std::to_string(i) + "]");
  }
}

void parseItem(const Value& item, std::string_view defaultKind, std::string_view source, int64_t index,
               Collector& out, std::vector<ObjectError>& errors) {
  parseItemFlattened(item, defaultKind, out,
                     [&](ItemError&& e) { errors.push_back(e.finish(itemWhere(source, index))); });
}

Status parseError(std::string_view text, std::string_view source, size_t offset, const char* what) {
  size_t line = 1, lineStart = 0;
  size_t end = std::min(offset, text.size());
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      lineStart = i + 1;
    }
  }
  return Status::error(Code::kParse, std::string(source) + ": invalid JSON at byte " + std::to_string(offset) +
                                         " (line " + std::to_string(line) + ", column " +
                                         std::to_string(end - lineStart + 1) + "): " + what);
}

// Zero bytes after an input's terminating NUL: rapidjson's SSE2 scanning
// loads 16 aligned bytes at a time, and the item tokenizer (json_scan.h) 16
// unaligned ones, so either may read up to 15 bytes past the NUL (harmless to
// the hardware, an out-of-bounds read to the sanitizers).
constexpr size_t kPadding = 16;

// A byte buffer, not zero-filled (unlike a resized std::string). It comes
// from the heap, not from a mapping of its own: once the parse is done and it
// is freed, the desired state's allocations reuse its pages instead of
// faulting in and zeroing fresh ones (kipvs's main() lets malloc serve blocks
// of up to 32 MB from the heap, controller/heap.h).
std::unique_ptr<char[]> byteBuffer(size_t n) { return std::make_unique_for_overwrite<char[]>(n); }

// The input, NUL-terminated: rapidjson's NUL-terminated reader is about three
// times faster than its (pointer, length) one. A regular file is mapped, not
// read: under qemu TCG, where the suite runs, pread() copied a 28 MB file in
// 80-120 ms (the kernel's copy is `rep movsb`, emulated a byte at a time),
// mapping and touching it took 10 ms, and the parse's CPU went from 912 to
// 826 ms. The cost: a file truncated while it is parsed kills the process
// with SIGBUS (reconcile says so) instead of giving an error; nothing is
// written to the kernel before the input has parsed.
class Input {
 public:
  Input() = default;
  Input(Input&& o) noexcept { *this = std::move(o); }
  Input& operator=(Input&& o) noexcept {
    std::swap(heap_, o.heap_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(map_, o.map_);
    std::swap(mapBytes_, o.mapBytes_);
    return *this;
  }
  ~Input() {
    if (map_) ::munmap(map_, mapBytes_);
  }

  // A regular file of `size` bytes, mapped read-only; the NUL and the
  // padding after it are zero pages of an anonymous mapping that the file's
  // is laid over (a file's last page is zero past its end, and pages past
  // that would be SIGBUS). An error when it cannot be mapped.
  static StatusOr<Input> map(int fd, const std::string& path, size_t size) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t bytes = (size + 1 + kPadding + page - 1) / page * page;
    void* region = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) return Status::error(Code::kIo, "cannot map " + path, errno);
    Input in;
    in.map_ = region;
    in.mapBytes_ = bytes;
    if (::mmap(region, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) {
      return Status::error(Code::kIo, "cannot map " + path, errno);
    }
    in.data_ = static_cast<const char*>(region);
    in.size_ = size;
    return in;
  }

  static Input copyOf(std::string_view text) {
    Input in;
    in.heap_ = byteBuffer(text.size() + 1 + kPadding);
    if (!text.empty()) std::memcpy(in.heap_.get(), text.data(), text.size());
    std::memset(in.heap_.get() + text.size(), 0, 1 + kPadding);
    in.data_ = in.heap_.get();
    in.size_ = text.size();
    return in;
  }

  // The rest of an open file (path names it in errors); sizeHint: fstat's
  // size of a regular file, else 0.
  static StatusOr<Input> read(int fd, const std::string& path, size_t sizeHint) {
    Input in;
    if (Status s = in.readAll(fd, path, sizeHint); !s.isOk()) return s;
    return in;
  }

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool mapped() const { return map_ != nullptr; }
  std::string_view view() const { return {data_, size_}; }

 private:
  // One buffer, its size from fstat when known (+1 for the NUL, +1 so that
  // EOF is seen without growing), else growing by doubling; kPadding more.
  Status readAll(int fd, const std::string& path, size_t sizeHint) {
    size_t capacity = sizeHint ? sizeHint + 2 : size_t{1} << 16, size = 0;
    heap_ = byteBuffer(capacity + kPadding);
    for (;;) {
      if (capacity - size < 2) {
        auto bigger = byteBuffer(capacity * 2 + kPadding);
        std::memcpy(bigger.get(), heap_.get(), size);
        heap_ = std::move(bigger);
        capacity *= 2;
      }
      ssize_t n = ::read(fd, heap_.get() + size, capacity - size - 1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::error(Code::kIo, "cannot read " + path, errno);
      }
      if (n == 0) break;
      size += static_cast<size_t>(n);
    }
    std::memset(heap_.get() + size, 0, 1 + kPadding);
    data_ = heap_.get();
    size_ = size;
    return Status::ok();
  }

  std::unique_ptr<char[]> heap_;
  const char* data_ = "";
  size_t size_ = 0;
  void* map_ = nullptr;  // map(): the whole region, unmapped with the Input
  size_t mapBytes_ = 0;
};

// Deeper nesting is refused: rapidjson's reader recurses once per level, and
// ~100k levels overflow the stack (a crash, where an error is due). The API
// server's own limit is the same; Kubernetes objects nest ~10 deep.
constexpr int kMaxDepth = 10000;

// Forwards a reader's events to a Document, refusing nesting beyond kMaxDepth.
class DepthLimit {
 public:
  // depth: how deep in the input the value starts (an item of a List: 2).
  DepthLimit(rapidjson::Document& doc, int depth) : doc_(doc), depth_(depth) {}
  bool tooDeep() const { return tooDeep_; }

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) { return doc_.RawNumber(s, n, copy); }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { return --depth_, doc_.EndObject(n); }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return --depth_, doc_.EndArray(n); }

 private:
  bool enter() {
    if (++depth_ <= kMaxDepth) return true;
    tooDeep_ = true;
    return false;
  }

  rapidjson::Document& doc_;
  int depth_;
  bool tooDeep_ = false;
};

// One JSON value, `depth` levels deep in the input, from ss into doc
// (unchanged on error). tooDeep: the error is kMaxDepth's, not a syntax error.
template <unsigned kFlags, typename Stream>
rapidjson::ParseResult parseValueInto(rapidjson::Document& doc, Stream& ss, int depth, bool& tooDeep) {
  rapidjson::Reader reader;
  rapidjson::ParseResult result;
  DepthLimit limit(doc, depth);
  auto generate = [&](rapidjson::Document&) {
    result = reader.Parse<kFlags>(ss, limit);
    return !result.IsError();
  };
  doc.Populate(generate);
  tooDeep = limit.tooDeep();
  return result;
}

// A document's DOM into the cluster: a List's items or one object.
Status collectDocument(const Value& doc, std::string_view source, Cluster& cluster) {
  if (!doc.IsObject()) {
    return Status::error(Code::kParse, std::string(source) + ": top-level JSON value is " + typeName(doc) +
                                           ", not a Kubernetes object or List");
  }
  Collector out(cluster);
  bool kindTwice = false, itemsTwice = false;
  const Value* k = Reader::get(doc, "kind", &kindTwice);
  const Value* items = Reader::get(doc, "items", &itemsTwice);
  if (kindTwice || itemsTwice) {
    return Status::error(Code::kParse, std::string(source) + ": top-level key \"" + (kindTwice ? "kind" : "items") +
                                           "\" given twice");
  }
  std::string_view kind;
  if (k && k->IsString()) kind = view(*k);
  if (kind.empty()) return Status::error(Code::kParse, std::string(source) + ": top-level object has no kind");
  if (isListKind(kind)) {
    if (items && !items->IsArray()) {
      return Status::error(Code::kParse, std::string(source) + ": " + std::string(kind) + ".items is " +
                                             typeName(*items) + ", not an array");
    }
    if (!items) return Status::ok();
    std::string_view itemKind = itemKindOf(kind);
    for (rapidjson::SizeType i = 0; i < items->Size(); ++i) {
      parseItem((*items)[i], itemKind, source, i, out, cluster.errors);
    }
    return Status::ok();
  }
  parseItem(doc, {}, source, -1, out, cluster.errors);
  return Status::ok();
}

// The whole input as one DOM: the reference behaviour, and the path for
// everything the streaming parser below leaves to it (syntax errors, single
// objects, odd top levels).
Status parseDocument(const Input& in, std::string_view source, Cluster& cluster) {
  std::string_view text = in.view();
  // A NUL inside would end the input early and hide what follows.
  if (const void* nul = std::memchr(text.data(), '\0', text.size())) {
    size_t at = static_cast<const char*>(nul) - text.data();
    return parseError(text, source, at, "NUL byte in input");
  }
  // A UTF-8 byte order mark is not content: kubectl reads such a file (as
  // YAML, which JSON is), so skip it; offsets stay the file's.
  const size_t bom = text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
  rapidjson::Document doc;
  rapidjson::StringStream ss(in.data() + bom);
  bool tooDeep = false;
  rapidjson::ParseResult r = parseValueInto<rapidjson::kParseDefaultFlags>(doc, ss, 0, tooDeep);
  if (tooDeep) return parseError(text, source, bom + r.Offset(), "nesting deeper than 10000 levels");
  if (r.IsError()) return parseError(text, source, bom + r.Offset(), GetParseError_En(r.Code()));
  return collectDocument(doc, source, cluster);
}

using detail::isJsonSpace;

// Only ever in a Window (padded as detail::skipJsonSpace needs).
void skipSpace(const char*& p) { p = detail::skipJsonSpace(p); }

// The part of the input in memory, [ptr(offset), end()), followed by a NUL
// and kPadding more bytes as the scanners need. Over an Input (a mapped
// file, or one read whole): all of it. Over a regular file that could not be
// mapped: read a chunk at a time (pread) as the parse moves on,
// keeping only the bytes still needed, so that a 28 MB file costs a few
// hundred KB of fresh memory instead of 28 MB (under qemu TCG, faulting in
// and zeroing fresh pages was a quarter of the parse's CPU), and the read
// goes on beside the parse. The fd is not owned; two windows may share it.
class Window {
 public:
  explicit Window(const Input& in) : in_(&in), data_(in.data()), size_(in.size()), eof_(true) {}
  Window(int fd, size_t fileSize, size_t from, size_t chunk)
      : fd_(fd), fileSize_(fileSize), chunk_(std::max<size_t>(chunk, 1)) {
    fill(from);
  }
  Window(Window&&) = default;

  // A window of its own over the same input, at `offset` (the second parse thread's).
  Window at(size_t offset) const {
    if (in_) return Window(*in_);
    return Window(fd_, fileSize_, offset, chunk_);
  }
  // The byte at `offset`, reading from there if it is not in the window.
  const char* seek(size_t offset) {
    if (const char* p = ptr(offset)) return p;
    if (in_) return end();  // past the end of an Input: nothing there
    fill(offset);
    return data_;
  }
  // The byte at `offset` if it is in the window, else nullptr.
  const char* ptr(size_t offset) const {
    return offset >= start_ && offset - start_ <= size_ ? data_ + (offset - start_) : nullptr;
  }
  const char* end() const { return data_ + size_; }
  size_t offsetOf(const char* p) const { return start_ + static_cast<size_t>(p - data_); }
  // Nothing more to read (or a read failed: the whole-document fallback reads again and says why).
  bool atEnd() const { return eof_; }
  // The input's size: exact over an Input, fstat's word over a file.
  size_t size() const { return in_ ? in_->size() : fileSize_; }
  // A value read up to q is whole: q is not where the window ends (a number
  // cut there would look whole), or there is nothing after.
  bool whole(const char* q) const { return q < end() || eof_; }

  // More of the input after end(), keeping the bytes from p on (p is moved
  // with them). False when there is no more.
  bool more(const char*& p) {
    if (eof_) return false;
    const size_t keep = static_cast<size_t>(p - data_);
    if (keep > 0) {
      std::memmove(buffer_.get(), data_ + keep, size_ - keep);
      start_ += keep;
      size_ -= keep;
    }
    const bool got = readMore();
    p = data_;  // after readMore(), which may have moved the buffer
    return got;
  }

  // Up to n bytes from `offset`, without moving the window (where to split).
  std::string_view peek(size_t offset, size_t n) {
    if (in_) {
      offset = std::min(offset, in_->size());
      return in_->view().substr(offset, n);
    }
    peek_.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_, peek_.data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    return std::string_view(peek_.data(), got);
  }

 private:
  void fill(size_t offset) {
    start_ = offset;
    size_ = 0;
    eof_ = false;
    readMore();
  }

  // One chunk more (a short read is fine); the buffer doubles when the bytes
  // kept fill it (an item longer than a chunk).
  bool readMore() {
    if (capacity_ - size_ < chunk_) {
      const size_t capacity = std::max(capacity_ * 2, size_ + chunk_);
      auto bigger = byteBuffer(capacity + 1 + kPadding);
      if (size_ > 0) std::memcpy(bigger.get(), data_, size_);
      buffer_ = std::move(bigger);
      capacity_ = capacity;
      data_ = buffer_.get();
    }
    ssize_t n;
    do {
      n = ::pread(fd_, buffer_.get() + size_, chunk_, static_cast<off_t>(start_ + size_));
    } while (n < 0 && errno == EINTR);
    if (n > 0) size_ += static_cast<size_t>(n);
    if (n <= 0) eof_ = true;
    std::memset(buffer_.get() + size_, 0, 1 + kPadding);
    return n > 0;
  }

  const Input* in_ = nullptr;  // over an Input; else over fd_
  int fd_ = -1;
  size_t fileSize_ = 0, chunk_ = 0;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  const char* data_ = nullptr;  // the input from offset start_, size_ bytes of it
  size_t start_ = 0, size_ = 0;
  bool eof_ = false;
  std::string peek_;
};

// Past whitespace, reading more where it runs to the window's end.
void skipSpace(Window& w, const char*& p) {
  skipSpace(p);
  while (p == w.end() && w.more(p)) skipSpace(p);
}

// Parses one JSON value at a time: a List item straight into the model
// (item(), detail::ItemBuilder), anything else into a small DOM whose memory
// is reused for the next. Neither writes to the input: an item can be read
// again (by the DOM reader after the builder gave up, or with more of the
// input after the window's end cut it), and two threads can share a buffer.
class ValueParser {
 public:
  ValueParser()
      : poolBuffer_(new char[kPoolBytes]), pool_(poolBuffer_.get(), kPoolBytes), doc_(&pool_), scanner_(builder_) {}

  // One JSON value at p, depth levels deep, into doc(); p moves past it.
  bool parse(const char*& p, int depth) {
    rapidjson::StringStream ss(p);
    return parseFrom<rapidjson::kParseStopWhenDoneFlag>(ss, p, depth);
  }
  // The same, reading more of the input while the value runs past the window.
  bool parse(Window& w, const char*& p, int depth) {
    for (;;) {
      const char* q = p;
      if (parse(q, depth) && w.whole(q)) {
        p = q;
        return true;
      }
      if (!w.more(p)) return false;
    }
  }
  const rapidjson::Document& doc() const { return doc_; }
  // Drops doc()'s value and gives its memory back to the pool.
  void release() {
    doc_.SetNull();
    pool_.Clear();
  }

  // A List item (depth 2) straight into the model, tokenized by
  // detail::JsonScanner (rapidjson's events, faster on short strings): true
  // when builder() holds it and p moved past it; false when the builder gave
  // up or the scanner left the item to rapidjson (a syntax error, an odd
  // number, the window's end). Either way p has not moved.
  bool item(const char*& p, std::string_view defaultKind) {
    builder_.reset(defaultKind, 2, kMaxDepth);
    const char* q = p;
    if (scanner_.scan(q) != detail::ScanResult::kDone) return false;
    p = q;
    return true;
  }
  detail::ItemBuilder& builder() { return builder_; }

 private:
  template <unsigned kFlags, typename Stream>
  bool parseFrom(Stream& ss, const char*& p, int depth) {
    release();
    bool tooDeep = false;
    if (parseValueInto<kFlags>(doc_, ss, depth, tooDeep).IsError()) return false;
    p += ss.Tell();
    return true;
  }

  // Enough for a typical object's DOM; bigger ones get 64 KiB chunks, freed after the object.
  static constexpr size_t kPoolBytes = 256 * 1024;
  std::unique_ptr<char[]> poolBuffer_;
  rapidjson::MemoryPoolAllocator<> pool_;
  rapidjson::Document doc_;
  detail::ItemBuilder builder_;
  detail::JsonScanner<detail::ItemBuilder> scanner_;  // after builder_, which it refers to
};

// List items from p (at an item, maybe after whitespace) through the closing
// ']', or until an item would start at offset `stop`. What ended the run is in `end`.
struct ItemRun {
  enum class End {
    kClose,     // the closing ']' (p is past it)
    kStop,      // the next item starts exactly at stop (p is there)
    kPassed,    // an item spans stop: stop is not an item boundary
    kFallback,  // a syntax error or anything else parseDocument must judge
    kCancelled, // asked to stop; p is at the next item
  };
  End end = End::kFallback;
  int64_t count = 0;  // items parsed
  int64_t byDom = 0;  // ... of which through the DOM reader
  std::vector<std::pair<int64_t, ItemError>> errors;  // with the item's index in this run
};

// fast: items straight into the model (ValueParser::item), the DOM reader
// only for those it gives up (read again from the same bytes); else each
// through a DOM and the Reader above, the reference the fast path is tested
// against. An item the window's end cuts is read again with more of the input.
ItemRun parseItems(ValueParser& vp, Window& w, const char*& p, std::optional<size_t> stop, bool kindKnown,
                   std::string_view itemKind, bool fast, Collector& out, const std::atomic<bool>* cancel) {
  ItemRun run;
  skipSpace(w, p);
  for (;;) {
    const size_t at = w.offsetOf(p);
    if (stop && at == *stop) {
      run.end = ItemRun::End::kStop;
      return run;
    }
    if (stop && at > *stop) {
      run.end = ItemRun::End::kPassed;
      return run;
    }
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      run.end = ItemRun::End::kCancelled;
      return run;
    }
    for (;;) {
      const char* q = p;
      if (fast && vp.item(q, itemKind) && w.whole(q)) {
        detail::ItemBuilder& b = vp.builder();
        if (b.outcome() == detail::ItemBuilder::Outcome::kService) out.add(std::move(b.service()));
        if (b.outcome() == detail::ItemBuilder::Outcome::kSlice) out.add(std::move(b.slice()));
        p = q;
        break;
      }
      // The builder gave up, or the tokenizer left the item to rapidjson (an
      // odd number, a syntax error, the window's end): the DOM reader reads it.
      q = p;
      if (vp.parse(q, 2) && w.whole(q)) {
        // Its kind would come from the List's, which is not known yet.
        if (!kindKnown && vp.doc().IsObject() && !Reader::get(vp.doc(), "kind")) return run;
        parseItemFlattened(vp.doc(), itemKind, out,
                           [&](ItemError&& e) { run.errors.emplace_back(run.count, std::move(e)); });
        vp.release();
        ++run.byDom;
        p = q;
        break;
      }
      // Cut by the window's end: again, with more. At the input's end, a
      // syntax error (or a failed read): parseDocument reports it.
      if (!w.more(p)) return run;
    }
    ++run.count;
    skipSpace(w, p);
    if (*p == ',') {
      ++p;
      skipSpace(w, p);
      continue;
    }
    if (*p != ']') return run;
    ++p;
    run.end = ItemRun::End::kClose;
    return run;
  }
}

// A List, one item at a time (ValueParser): each item straight into the
// model, or, when the builder gives it up, read again from the same bytes
// by the same code as in parseDocument. A whole-input DOM of a 28 MB List is
// ~55 MB that is written once and page-faulted in. The top level is walked
// here, by hand (whitespace, braces, commas, colons); each item is tokenized
// by detail::JsonScanner (rapidjson's events), every other value by rapidjson.
//
// A large items array is parsed in chunks on two threads (itemsInChunks):
// this one from the front, a second one from the back, each chunk's start a
// guess at an item boundary (as the first item's indentation shows it) that
// counts only once a parse lands on it exactly; otherwise the second thread's
// work is dropped and this one goes on alone. So the result is always the
// sequential one. When this thread runs out of chunks first (the second one,
// at low priority, may get little CPU while a kernel dump runs), it takes over
// the rest of the second one's chunk.
//
// Returns false, having added nothing, when the input needs parseDocument:
// not an object, a syntax error (parseDocument reports it with rapidjson's
// message and offset), a kind that is not a List, items that are not an
// array, an item without kind before the List's kind is known.
class ListStreamer {
 public:
  ListStreamer(Window& w, std::string_view source, const ParseOptions& options)
      : w_(w), source_(source), options_(options) {}

  bool run(Cluster& cluster) {
    Cluster c;
    Collector out(c);
    const char* p = w_.seek(0);
    skipSpace(w_, p);
    if (*p != '{') return false;
    ++p;
    bool first = true, sawKind = false, sawItems = false;
    std::string kind;  // the first "kind", if a string
    for (;;) {
      skipSpace(w_, p);
      if (first && *p == '}') break;
      if (!vp_.parse(w_, p, 1) || !vp_.doc().IsString()) return false;  // a key
      std::string key(vp_.doc().GetString(), vp_.doc().GetStringLength());
      skipSpace(w_, p);
      if (*p != ':') return false;
      ++p;
      // A key given twice: parseDocument says so.
      if ((key == "items" && sawItems) || (key == "kind" && sawKind)) return false;
      if (key == "items") {
        sawItems = true;
        skipSpace(w_, p);
        if (*p != '[') return false;  // null, or not an array: parseDocument's word
        // The List's kind, if it came first (as in API server answers; kubectl sorts keys, items first).
        std::string_view itemKind;
        bool kindKnown = sawKind && isListKind(kind);
        if (sawKind && !kindKnown) return false;
        if (kindKnown) itemKind = itemKindOf(kind);
        if (!items(p, kindKnown, itemKind, out, c.errors)) return false;
      } else {
        if (!vp_.parse(w_, p, 1)) return false;
        if (key == "kind") {
          sawKind = true;
          if (!vp_.doc().IsString()) return false;  // "no kind": parseDocument says so
          kind.assign(vp_.doc().GetString(), vp_.doc().GetStringLength());
        }
      }
      vp_.release();
      first = false;
      skipSpace(w_, p);
      if (*p == ',') {
        ++p;
        continue;
      }
      if (*p != '}') return false;
      break;
    }
    ++p;
    skipSpace(w_, p);
    // The end of the input, not an early NUL.
    if (p != w_.end() || !w_.atEnd()) return false;
    if (!sawKind || !isListKind(kind)) return false;
    cluster = std::move(c);
    return true;
  }

 private:
  // The items array, p at its '['.
  bool items(const char*& p, bool kindKnown, std::string_view itemKind, Collector& out,
             std::vector<ObjectError>& errors) {
    ++p;
    const size_t open = w_.offsetOf(p);  // past '[': the first item's indentation follows
    skipSpace(w_, p);
    if (*p == ']') {
      ++p;
      return true;
    }
    auto record = [&](const ItemRun& run, int64_t base) {
      for (const auto& [i, e] : run.errors) errors.push_back(e.finish(itemWhere(source_, base + i)));
    };
    const size_t firstItem = w_.offsetOf(p);
    Progress done;
    std::vector<size_t> bounds = options_.parallel ? chunkBounds(p, open, firstItem) : std::vector<size_t>{};
    if (bounds.size() > 1) {
      // The head's reservation after the helper is off: its first touch of
      // fresh pages is the main thread's.
      done = itemsInChunks(p, bounds, kindKnown, itemKind, out, record);
      if (done.result) return *done.result;
    } else {
      out.reserveFor(w_.size() > open ? w_.size() - open : 0);
    }
    ItemRun run = parseItems(vp_, w_, p, std::nullopt, kindKnown, itemKind, options_.fastItems, out, nullptr);
    record(run, done.items);
    if (options_.stats) options_.stats->itemsByDom += static_cast<int>(run.byDom);
    return run.end == ItemRun::End::kClose;
  }

  // How far the two-thread parse got: `result` when it settled the items
  // (true: through ']'; false: parseDocument must judge), else `items` are
  // parsed and p is at the next one.
  struct Progress {
    std::optional<bool> result;
    int64_t items = 0;
  };

  // The items array in chunks between two threads, from both ends: this
  // thread takes chunks from the front (the first, then the next as it
  // reaches it), a helper from the back, each into a part of its own; they
  // meet wherever their speeds put them, so neither waits for the other for
  // longer than a small chunk takes (kubectl lists every Service before any
  // EndpointSlice, and the Services' bytes parse slower: with the items
  // split in two halves, the helper was done 40-150 ms before this thread in
  // the VM). bounds[0] is the first item; the others are guesses at item
  // boundaries (chunkBounds) that count only once a parse lands on them
  // exactly: this thread on each it reaches, the helper's run of a chunk on
  // the chunk's end. Anything else (a guess inside a string, a syntax error,
  // an item the fast path leaves to the DOM reader before the List's kind is
  // known) drops the helper's work, and this thread goes on alone from the
  // last boundary it landed on: the result is always the sequential one.
  // When this thread runs out of chunks, it takes over the rest of the one
  // the helper is in (which, at low priority, may have had no CPU at all).
  template <typename Record>
  Progress itemsInChunks(const char*& p, const std::vector<size_t>& bounds, bool kindKnown,
                         std::string_view itemKind, Collector& out, const Record& record) {
    const size_t count = bounds.size();
    struct Part {
      Cluster cluster;
      ItemRun run;
      size_t end = 0;  // where its parse stopped
    };
    std::vector<Part> parts(count);  // the helper's, by chunk
    std::mutex claims;
    size_t front = 1, back = count;  // chunks [0, front) are this thread's, [back, count) the helper's
    std::atomic<bool> cancel{false};
    auto stopOf = [&](size_t chunk) { return chunk + 1 < count ? std::optional<size_t>(bounds[chunk + 1]) : std::nullopt; };
    // How a chunk's run ends when it ran through the chunk: on the next one's start, or the last on ']'.
    auto wholeEnd = [&](size_t chunk) { return chunk + 1 < count ? ItemRun::End::kStop : ItemRun::End::kClose; };
    std::thread worker = startHelper([&] {
      if (options_.helperDelay.count() > 0) std::this_thread::sleep_for(options_.helperDelay);
      ValueParser vp;
      for (;;) {
        size_t chunk;
        {
          std::lock_guard<std::mutex> l(claims);
          if (back - 1 < front || cancel.load()) return;
          chunk = --back;
        }
        if (options_.chunkHook) options_.chunkHook(1, chunk);
        Part& part = parts[chunk];
        Collector collect(part.cluster, Collector::Names::kAll);
        // The first (largest) chunk is sized ahead; the small ones near the
        // middle grow as they go (a reservation faults in a fresh page).
        if (chunk + 1 == count) collect.reserveFor(w_.size() - bounds[chunk]);
        Window w = w_.at(bounds[chunk]);
        const char* q = w.seek(bounds[chunk]);
        part.run = parseItems(vp, w, q, stopOf(chunk), kindKnown, itemKind, options_.fastItems, collect, &cancel);
        part.end = w.offsetOf(q);
        if (part.run.end != wholeEnd(chunk)) return;
      }
    });
    if (!worker.joinable()) return {};  // no thread: parse alone
    out.reserveFor(w_.size() - bounds.front());

    // This thread's chunks, in order, straight into `out`.
    int64_t items = 0;
    size_t chunk = 0;
    for (;;) {
      ItemRun run = parseItems(vp_, w_, p, stopOf(chunk), kindKnown, itemKind, options_.fastItems, out, nullptr);
      record(run, items);
      items += run.count;
      if (options_.stats) options_.stats->itemsByDom += static_cast<int>(run.byDom);
      if (run.end != ItemRun::End::kStop) {
        // The items ended (every chunk was this thread's; or past a guess
        // inside the last item), or a guess was no boundary, or this thread
        // met what the DOM reader or parseDocument must judge: the helper's
        // work goes either way.
        cancel = true;
        worker.join();
        const bool allMine = run.end == ItemRun::End::kClose && chunk + 1 == count;
        if (options_.stats) ++(allMine ? options_.stats->splitsUsed : options_.stats->splitsDropped);
        if (run.end != ItemRun::End::kPassed) return {run.end == ItemRun::End::kClose};
        return {std::nullopt, items};  // not a boundary: on from here alone
      }
      if (options_.chunkHook) options_.chunkHook(0, chunk + 1);
      std::lock_guard<std::mutex> l(claims);
      if (chunk + 1 < back) {
        front = ++chunk + 1;
        continue;
      }
      break;  // the next chunk is the helper's
    }
    // Whatever the helper has not done yet, this thread takes over: it stops
    // at its next item boundary.
    cancel = true;
    if (options_.chunkHook) options_.chunkHook(2, chunk + 1);
    worker.join();
    const size_t first = chunk + 1;  // the helper's first chunk; this thread is at its start
    // Its chunks after the first must each have run to their end, its first
    // to its end or to where it was asked to stop; else (a guess failed) its
    // work goes and this thread parses the rest alone.
    bool alone = false;
    for (size_t c = first + 1; c < count; ++c) alone = alone || parts[c].run.end != wholeEnd(c);
    const ItemRun::End firstEnd = parts[first].run.end;
    const bool firstWhole = firstEnd == wholeEnd(first);
    alone = alone || !(firstWhole || firstEnd == ItemRun::End::kCancelled);
    if (alone) {
      if (options_.stats) ++options_.stats->splitsDropped;
      return {std::nullopt, items};  // p is at bounds[first], where this thread landed
    }
    // The helper's part of its first chunk, then the rest of that chunk (if
    // it stopped short), then its other chunks.
    auto take = [&](Part& part) {
      for (auto& s : part.cluster.services) out.add(std::move(s));
      for (auto& s : part.cluster.slices) out.add(std::move(s));
      record(part.run, items);
      items += part.run.count;
      if (options_.stats) {
        options_.stats->itemsByHelper += static_cast<int>(part.run.count);
        options_.stats->itemsByDom += static_cast<int>(part.run.byDom);
      }
    };
    take(parts[first]);  // verified: it starts where this thread landed
    p = w_.seek(parts[first].end);
    if (!firstWhole) {
      ItemRun rest = parseItems(vp_, w_, p, stopOf(first), kindKnown, itemKind, options_.fastItems, out, nullptr);
      record(rest, items);
      items += rest.count;
      if (options_.stats) options_.stats->itemsByDom += static_cast<int>(rest.byDom);
      if (rest.end != ItemRun::End::kStop) {
        // The last chunk's end, or the helper's later chunks go: the guess
        // after this chunk was no boundary, or there is an error to judge.
        const bool lastChunk = first + 1 == count && rest.end == ItemRun::End::kClose;
        if (options_.stats) {
          ++(lastChunk ? options_.stats->splitsUsed : options_.stats->splitsDropped);
          options_.stats->takenOver += lastChunk ? 1 : 0;
        }
        if (rest.end != ItemRun::End::kPassed) return {rest.end == ItemRun::End::kClose};
        return {std::nullopt, items};  // on from here alone
      }
    }
    for (size_t c = first + 1; c < count; ++c) take(parts[c]);
    if (options_.stats) {
      ++options_.stats->splitsUsed;
      options_.stats->chunksByHelper += static_cast<int>(count - first) - (firstWhole ? 0 : 1);
      options_.stats->takenOver += firstWhole ? 0 : 1;
    }
    p = w_.seek(parts[count - 1].end);  // past the closing ']'
    return {true};
  }

  // Where chunks of the items array could start, for itemsInChunks: the first
  // item, then guesses at item boundaries (chunkBoundary) near fixed shares of
  // the array. Small chunks near the middle, where the two threads meet; the
  // helper's first, from the back, as large as this thread's. Empty: too small
  // to be worth a thread, or no guess.
  std::vector<size_t> chunkBounds(const char* p, size_t open, size_t firstItem) {
    const size_t total = w_.size();
    if (total <= open || total - open < options_.parallelMinBytes) return {};
    if (*p != '{' || !haveSpareCpu()) return {};
    const char* openAt = w_.ptr(open);
    if (!openAt) return {};  // whitespace longer than a chunk: no indentation to go by
    const std::string indent(openAt, firstItem - open);
    std::vector<size_t> bounds{firstItem};
    for (int percent : {38, 44, 48, 52, 56, 62}) {
      const size_t target = open + (total - open) * static_cast<size_t>(percent) / 100;
      std::optional<size_t> b = chunkBoundary(target, open, indent);
      if (b && *b > bounds.back()) bounds.push_back(*b);
    }
    if (bounds.size() < 2) return {};
    return bounds;
  }

  // A guess at an item boundary at or after `target`: "},<ws>{" with the
  // same whitespace as between '[' and the first item (at offset open).
  // Without whitespace to go by, the next item must also begin as kubectl's
  // and the API server's do (apiVersion or kind first). Looked for in the
  // 256 KiB after target.
  std::optional<size_t> chunkBoundary(size_t target, size_t open, const std::string& indent) {
    constexpr size_t kLookBack = 4096, kLookAhead = 256 * 1024;
    const size_t from = std::max(open, target - std::min(target, kLookBack));
    const std::string_view span = w_.peek(from, (target - from) + kLookAhead);
    for (size_t i = target - from; i + 1 + indent.size() < span.size(); ++i) {
      const void* comma = std::memchr(span.data() + i, ',', span.size() - i);
      if (!comma) return std::nullopt;
      i = static_cast<size_t>(static_cast<const char*>(comma) - span.data());
      size_t before = i;
      while (before > 0 && isJsonSpace(span[before - 1])) --before;
      if (before == 0 || span[before - 1] != '}') continue;
      if (i + 1 + indent.size() >= span.size() || span.substr(i + 1, indent.size()) != indent) continue;
      const std::string_view rest = span.substr(i + 1 + indent.size());
      if (rest.empty() || rest[0] != '{') continue;
      if (indent.empty() && !rest.starts_with("{\"apiVersion\"") && !rest.starts_with("{\"kind\"")) continue;
      return from + i + 1 + indent.size();
    }
    return std::nullopt;
  }

  Window& w_;
  std::string_view source_;
  ParseOptions options_;
  ValueParser vp_;
};

// The streaming parser, or, where it declines (rare: not a List, a syntax
// error, odd key orders), the whole input as one DOM, from the same bytes.
StatusOr<Cluster> parseInput(const Input& in, std::string_view source, const ParseOptions& options) {
  Cluster c;
  Window w(in);
  if (ListStreamer(w, source, options).run(c)) return c;
  if (options.stats) ++options.stats->wholeDocument;
  KIPVS_RETURN_IF_ERROR(parseDocument(in, source, c));
  return c;
}

}  // namespace

void Cluster::merge(Cluster&& other) {
  std::vector<Cluster> parts;
  parts.push_back(std::move(*this));
  parts.push_back(std::move(other));
  *this = merged(std::move(parts));
  other = Cluster();
}

Cluster Cluster::merged(std::vector<Cluster>&& parts) {
  if (parts.empty()) return Cluster();
  Cluster all = std::move(parts.front());
  // One part has nothing to merge: its duplicates went when it was parsed.
  // (Indexing its names again held a reconcile of 10,000 Services back by
  // tens of milliseconds under qemu, the other CPU idle.)
  if (parts.size() == 1) return all;
  Collector out(all);
  // An object that did not parse overrides an earlier copy of it as a valid
  // one would: the earlier copy is not applied (the object is unknown, and
  // what it may have in the kernel is kept). A later valid copy overrides
  // an earlier one's error. (Kind, namespace/name) of errors naming one:
  using Name = std::pair<std::string, std::string>;
  auto nameOf = [](const ObjectError& e) -> std::optional<Name> {
    if ((e.kind != "Service" && e.kind != "EndpointSlice") || e.name.find("/<") != std::string::npos) return {};
    return Name{e.kind, e.name};
  };
  std::set<Name> errorNames, brokenLater;
  for (const ObjectError& e : all.errors) {
    if (auto n = nameOf(e)) errorNames.insert(*n);
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    Cluster& other = parts[i];
    std::set<Name> partErrors;  // within one part, an object and an error of one name both stand, as parsed
    for (const ObjectError& e : other.errors) {
      if (auto n = nameOf(e)) partErrors.insert(*n);
    }
    // This part's objects that override an error of their name.
    std::set<Name> fresh;
    auto note = [&](Name&& n) {
      if (errorNames.count(n) || partErrors.count(n)) fresh.insert(std::move(n));
    };
    for (const Service& s : other.services) note(Name{"Service", s.meta.key()});
    for (const EndpointSlice& s : other.slices) note(Name{"EndpointSlice", s.meta.key()});
    if (!fresh.empty()) {
      std::erase_if(all.errors, [&](const ObjectError& e) {
        auto n = nameOf(e);
        return n && fresh.count(*n);
      });
      for (const Name& n : fresh) {
        errorNames.erase(n);
        brokenLater.erase(n);
      }
    }
    for (auto& s : other.services) out.add(std::move(s));
    for (auto& s : other.slices) out.add(std::move(s));
    for (const Name& n : partErrors) {
      errorNames.insert(n);
      if (!fresh.count(n)) brokenLater.insert(n);
    }
    all.errors.insert(all.errors.end(), std::make_move_iterator(other.errors.begin()),
                      std::make_move_iterator(other.errors.end()));
    other = Cluster();
  }
  if (!brokenLater.empty()) {
    std::erase_if(all.services, [&](const Service& s) { return brokenLater.count({"Service", s.meta.key()}) > 0; });
    std::erase_if(all.slices,
                  [&](const EndpointSlice& s) { return brokenLater.count({"EndpointSlice", s.meta.key()}) > 0; });
  }
  return all;
}

StatusOr<Cluster> parseJson(std::string_view text, std::string_view sourceName, const ParseOptions& options) {
  // A string_view need not be NUL-terminated; the copy costs less than the slower reader.
  return parseInput(Input::copyOf(text), sourceName, options);
}

namespace {

// YAML: each document's DOM through the JSON reader's reference path, merged
// in order (a later object overrides an earlier one of the same name, as
// across files).
StatusOr<Cluster> parseYaml(std::string_view text, const std::string& source) {
  std::vector<Cluster> parts;
  Status s = forEachYamlDocument(text, source, [&](int index, int line, const Value& root) {
    Cluster c;
    KIPVS_RETURN_IF_ERROR(collectDocument(
        root, source + " document " + std::to_string(index) + " (line " + std::to_string(line) + ")", c));
    parts.push_back(std::move(c));
    return Status::ok();
  });
  if (!s.isOk()) return s;
  if (parts.empty()) {
    // Taken as "no Services", it would delete every virtual server kipvs owns.
    return Status::error(Code::kParse, source + ": no YAML documents");
  }
  return Cluster::merged(std::move(parts));
}

}  // namespace

// A regular file is mapped (Input::map), or, where it cannot be (or tests
// say not to), parsed as it is read (Window); stdin, YAML, and what the
// streaming parser declines are read whole first, from the same open file
// (the Window's preads leave its offset at the start).
StatusOr<Cluster> parseFile(const std::string& path, const ParseOptions& options) {
  const bool isStdin = path == "-";
  const std::string source = isStdin ? "<stdin>" : path;
  const int fd = isStdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(Code::kIo, "cannot open " + path, errno);
  struct Closer {
    int fd;
    ~Closer() {
      if (fd != STDIN_FILENO) ::close(fd);
    }
  } closer{fd};
  struct stat st;
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
  const size_t size = regular ? static_cast<size_t>(st.st_size) : 0;
  bool declined = false;
  std::optional<Input> whole;  // the input in one piece: mapped, else read below
  if (regular && !isStdin && options.mapFiles) {
    if (StatusOr<Input> mapped = Input::map(fd, path, size); mapped.isOk()) {
      if (options.stats) ++options.stats->filesMapped;
      whole = std::move(*mapped);
    }
  }
  if (!whole && regular && !isStdin) {
    Window w(fd, size, 0, options.chunkBytes);
    const char* p = w.seek(0);
    skipSpace(w, p);
    if (!isYamlInput(path, std::string_view(p, static_cast<size_t>(w.end() - p)))) {
      if (options.stats) ++options.stats->filesStreamed;
      Cluster c;
      if (ListStreamer(w, source, options).run(c)) return c;
      declined = true;
    }
  }
  if (!whole) {
    StatusOr<Input> in = Input::read(fd, path, size);
    if (!in) return in.status();
    whole = std::move(*in);
  }
  if (isYamlInput(isStdin ? std::string_view() : std::string_view(path), whole->view())) {
    return parseYaml(whole->view(), source);
  }
  if (!declined) {
    StatusOr<Cluster> c = parseInput(*whole, source, options);
    if (options.keepMapped && whole->mapped()) options.keepMapped->push_back(std::make_shared<Input>(std::move(*whole)));
    return c;
  }
  if (options.stats) ++options.stats->wholeDocument;
  Cluster c;
  KIPVS_RETURN_IF_ERROR(parseDocument(*whole, source, c));
  return c;
}

StatusOr<Cluster> parseFiles(const std::vector<std::string>& paths, const ParseOptions& options) {
  std::vector<Cluster> parts;
  for (const auto& p : paths) {
    StatusOr<Cluster> c = parseFile(p, options);
    if (!c) return c.status();
    parts.push_back(std::move(*c));
  }
  return Cluster::merged(std::move(parts));
}

}  // namespace kipvs::controller
