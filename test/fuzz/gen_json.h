#pragma once
// A generator of kubectl-like JSON driven by fuzzer bytes (parse_fuzz_gen):
// Lists of Services / EndpointSlices with every field the parser reads
// (controller/k8s.cc parseService / parseSlice, controller/item_builder.cc),
// mostly well-typed, sometimes not: nulls, other types, a field twice, unknown
// fields, shuffled key order, escaped strings, odd numbers, several layouts,
// and now and then a syntax error. Bounded: running out of bytes gives zeros,
// which end every list.

#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

namespace kipvs_fuzz {

class Gen {
 public:
  explicit Gen(FuzzedDataProvider& f) : f_(f) {}

  std::string document() {
    // Layout: compact, one space, or newline + indentation (kubectl: 4).
    const int layout = f_.ConsumeIntegralInRange(0, 4);
    nl_ = layout >= 2;
    indentUnit_ = layout == 2 ? 2 : layout == 3 ? 4 : layout == 4 ? 1 : 0;
    space_ = layout == 1;
    const int top = f_.ConsumeIntegralInRange(0, 15);
    if (top == 15) return item(0, 1);  // a single object
    std::vector<std::string> members;
    const char* kinds[] = {"List", "ServiceList", "EndpointSliceList", "PodList", "List", "List", "XList", "Service"};
    std::string kindMember = key("kind", 1) + (rare(16) ? scalarOfOtherType(1)
                                                                                     : str(kinds[f_.ConsumeIntegralInRange(0, 7)]));
    std::string itemsMember = key("items", 1);
    const int itemsShape = f_.ConsumeIntegralInRange(0, 31);
    if (itemsShape == 31) {
      itemsMember += "null";
    } else if (itemsShape == 30) {
      itemsMember += "{}";
    } else {
      const int n = f_.ConsumeIntegralInRange(0, 12);
      std::vector<std::string> its;
      for (int i = 0; i < n && f_.remaining_bytes() > 0; ++i) its.push_back(item(2, 2));
      itemsMember += array(its, 1);
    }
    members.push_back(key("apiVersion", 1) + str("v1"));
    members.push_back(key("metadata", 1) + "{" + key("resourceVersion", 2) + str("") + "}");
    // kind before items (API server), after (kubectl), missing, or twice.
    const int order = f_.ConsumeIntegralInRange(0, 7);
    if (order == 0) {
      members.push_back(itemsMember);
    } else if (order <= 3) {
      members.push_back(kindMember);
      members.push_back(itemsMember);
    } else {
      members.push_back(itemsMember);
      members.push_back(kindMember);
    }
    if (order == 5) members.push_back(key("kind", 1) + str("Pod"));
    if (order == 6) members.push_back(itemsMember);
    std::string doc = object(members, 0) + (nl_ ? "\n" : "");
    return corrupt(std::move(doc));
  }

 private:
  // --- layout ---------------------------------------------------------------
  std::string brk(int depth) {
    if (!nl_) return space_ ? " " : "";
    return "\n" + std::string(static_cast<size_t>(depth * indentUnit_), ' ');
  }
  std::string key(const std::string& k, int depth) {
    (void)depth;
    return escapeMaybe(k, true) + (space_ || nl_ ? ": " : ":");
  }
  std::string object(const std::vector<std::string>& members, int depth) {
    if (members.empty()) return "{}";
    std::string out = "{";
    for (size_t i = 0; i < members.size(); ++i) out += (i ? "," : "") + brk(depth + 1) + members[i];
    return out + brk(depth) + "}";
  }
  std::string array(const std::vector<std::string>& elems, int depth) {
    if (elems.empty()) return "[]";
    std::string out = "[";
    for (size_t i = 0; i < elems.size(); ++i) out += (i ? "," : "") + brk(depth + 1) + elems[i];
    return out + brk(depth) + "]";
  }

  // --- scalars --------------------------------------------------------------
  // A string literal, now and then with escapes for some of its characters.
  // isKey: only escapes that keep the text (a changed key is just an unknown one).
  std::string escapeMaybe(const std::string& s, bool isKey = false) {
    const int how = f_.ConsumeIntegralInRange(0, isKey ? 127 : 63);
    std::string out = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else if (how == 1 && i == 0) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04X", c);
        out += buf;
      } else if (how == 2 && c == '/') {
        out += "\\/";
      } else {
        out += static_cast<char>(c);
      }
    }
    if (isKey && how == 3) out += "\\u0000";  // a key with a NUL: not the field
    if (isKey) return out + "\"";
    if (how == 3) out += "\\u00e9";
    if (how == 4) out += "\\ud83d\\ude00";
    if (how == 5) out += "\\udc00";  // a lone low surrogate: accepted
    if (how == 6) out += "\\t";
    return out + "\"";
  }
  std::string str(const std::string& s) { return escapeMaybe(s); }
  std::string pick(std::initializer_list<const char*> pool) {
    const size_t i = f_.ConsumeIntegralInRange<size_t>(0, pool.size() - 1);
    return std::string(*(pool.begin() + i));
  }
  std::string integer() {
    return pick({"80", "0", "1", "443", "8080", "30080", "65535", "65536", "-1", "-0", "2147483647", "2147483648",
                 "4294967295", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                 "-9223372036854775809", "18446744073709551615", "18446744073709551616", "99999999999999999999",
                 "80.0", "8e1", "1E400", "-1e400", "1e-400", "0.5", "53", "600", "10800"});
  }
  std::string scalarOfOtherType(int depth) {
    switch (f_.ConsumeIntegralInRange(0, 9)) {
      case 0:
      case 1:
      case 2:
        return "null";
      case 3:
        return "true";
      case 4:
        return "false";
      case 5:
        return integer();
      case 6:
        return str(pick({"", "x", "80", "Service", "null"}));
      case 7:
        return "{}";
      case 8:
        return "[]";
      default:
        return unknownValue(depth);
    }
  }
  std::string unknownValue(int depth) {
    switch (f_.ConsumeIntegralInRange(0, 5)) {
      case 0:
        return str("x");
      case 1:
        return integer();
      case 2:
        return "1.5e3";
      case 3: {
        const int n = f_.ConsumeIntegralInRange(1, 40);
        return std::string(static_cast<size_t>(n), '[') + std::string(static_cast<size_t>(n), ']');
      }
      case 4:
        return object({key("kind", depth + 1) + str("Pod"), key("name", depth + 1) + str("x")}, depth);
      default:
        return array({"{}", object({key("apiVersion", depth + 2) + str("v1")}, depth + 1)}, depth);
    }
  }

  // --- fields -----------------------------------------------------------------
  enum class T { kStr, kInt, kBool, kIntOrStr, kStrList, kLabels, kObj, kObjList };
  struct Field {
    const char* name;
    T type;
    std::vector<const char*> pool;  // strings (kStr, kStrList) or the schema name (kObj, kObjList)
  };

  // A value of type t (the schema's), or now and then of another type.
  std::string value(const Field& fd, int depth) {
    if (rare(16)) return scalarOfOtherType(depth);
    switch (fd.type) {
      case T::kStr:
        return str(fd.pool.empty() ? "x" : fd.pool[f_.ConsumeIntegralInRange<size_t>(0, fd.pool.size() - 1)]);
      case T::kInt:
        return integer();
      case T::kBool:
        return f_.ConsumeBool() ? "true" : "false";
      case T::kIntOrStr:
        return f_.ConsumeBool() ? integer() : str(pick({"http", "web", "8080", ""}));
      case T::kStrList: {
        std::vector<std::string> e;
        const int n = f_.ConsumeIntegralInRange(0, 3);
        for (int i = 0; i < n; ++i) {
          e.push_back(rare(16)
                          ? scalarOfOtherType(depth + 1)
                          : str(fd.pool[f_.ConsumeIntegralInRange<size_t>(0, fd.pool.size() - 1)]));
        }
        return array(e, depth);
      }
      case T::kLabels: {
        std::vector<std::string> m;
        const int n = f_.ConsumeIntegralInRange(0, 4);
        for (int i = 0; i < n; ++i) {
          std::string k = pick({"app", "kubernetes.io/service-name", "service.kubernetes.io/headless",
                                "service.kubernetes.io/service-proxy-name", "kipvs.io/scheduler", "kipvs.io/weight",
                                "kipvs.io/", "other"});
          std::string v = rare(16) ? scalarOfOtherType(depth + 1)
                                                               : str(pick({"svc-0", "svc-1", "wrr", "", "kipvs", "a"}));
          m.push_back(key(k, depth + 1) + v);
        }
        return object(m, depth);
      }
      case T::kObj:
        return obj(fd.pool[0], depth);
      case T::kObjList: {
        std::vector<std::string> e;
        const int n = f_.ConsumeIntegralInRange(0, 3);
        for (int i = 0; i < n; ++i) {
          e.push_back(rare(16) ? scalarOfOtherType(depth + 1) : obj(fd.pool[0], depth + 1));
        }
        return array(e, depth);
      }
    }
    return "null";
  }

  const std::vector<Field>& schema(const std::string& name) {
    static const std::vector<Field> meta = {
        {"name", T::kStr, {"svc-0", "svc-1", "svc-0-abc", "", "a/b"}},
        {"namespace", T::kStr, {"ns", "default", "", "kube-system"}},
        {"labels", T::kLabels, {}},
        {"annotations", T::kLabels, {}},
        {"uid", T::kStr, {"u"}},
    };
    static const std::vector<Field> service = {
        {"apiVersion", T::kStr, {"v1"}},
        {"metadata", T::kObj, {"meta"}},
        {"spec", T::kObj, {"spec"}},
        {"status", T::kObj, {"status"}},
    };
    static const std::vector<Field> spec = {
        {"type", T::kStr, {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "", "Weird"}},
        {"clusterIP", T::kStr, {"10.96.0.1", "None", "", "fd00::1"}},
        {"clusterIPs", T::kStrList, {"10.96.0.1", "fd00::1"}},
        {"ipFamilies", T::kStrList, {"IPv4", "IPv6"}},
        {"ports", T::kObjList, {"svcport"}},
        {"externalIPs", T::kStrList, {"203.0.113.1"}},
        {"sessionAffinity", T::kStr, {"None", "ClientIP", "", "Sticky"}},
        {"sessionAffinityConfig", T::kObj, {"sac"}},
        {"externalTrafficPolicy", T::kStr, {"Cluster", "Local", "", "Global"}},
        {"internalTrafficPolicy", T::kStr, {"Cluster", "Local", ""}},
        {"healthCheckNodePort", T::kInt, {}},
        {"externalName", T::kStr, {"example.com", ""}},
        {"trafficDistribution", T::kStr, {"PreferClose"}},
        {"loadBalancerSourceRanges", T::kStrList, {"192.0.2.0/24"}},
        {"selector", T::kLabels, {}},
    };
    static const std::vector<Field> svcport = {
        {"name", T::kStr, {"http", "dns", ""}},
        {"protocol", T::kStr, {"TCP", "UDP", "SCTP", "ICMP"}},
        {"port", T::kInt, {}},
        {"targetPort", T::kIntOrStr, {}},
        {"nodePort", T::kInt, {}},
    };
    static const std::vector<Field> sac = {{"clientIP", T::kObj, {"clientip"}}};
    static const std::vector<Field> clientip = {{"timeoutSeconds", T::kInt, {}}};
    static const std::vector<Field> status = {{"loadBalancer", T::kObj, {"lb"}}};
    static const std::vector<Field> lb = {{"ingress", T::kObjList, {"ingress"}}};
    static const std::vector<Field> ingress = {
        {"ip", T::kStr, {"192.0.2.9"}}, {"hostname", T::kStr, {"lb.example"}}, {"ipMode", T::kStr, {"VIP", "Proxy"}}};
    static const std::vector<Field> slice = {
        {"apiVersion", T::kStr, {"discovery.k8s.io/v1"}},
        {"addressType", T::kStr, {"IPv4", "IPv6", "FQDN", "", "ipv4"}},
        {"metadata", T::kObj, {"meta"}},
        {"ports", T::kObjList, {"sliceport"}},
        {"endpoints", T::kObjList, {"endpoint"}},
    };
    static const std::vector<Field> sliceport = {
        {"name", T::kStr, {"http", "dns", ""}},
        {"protocol", T::kStr, {"TCP", "UDP"}},
        {"port", T::kInt, {}},
    };
    static const std::vector<Field> endpoint = {
        {"addresses", T::kStrList, {"10.1.0.1", "10.1.0.2", "fd00::10"}},
        {"conditions", T::kObj, {"conditions"}},
        {"nodeName", T::kStr, {"node-a", "node-00"}},
        {"zone", T::kStr, {"zone-a", ""}},
        {"hints", T::kObj, {"hints"}},
        {"targetRef", T::kObj, {"ref"}},
    };
    static const std::vector<Field> conditions = {
        {"ready", T::kBool, {}}, {"serving", T::kBool, {}}, {"terminating", T::kBool, {}}};
    static const std::vector<Field> hints = {{"forZones", T::kObjList, {"nameobj"}},
                                             {"forNodes", T::kObjList, {"nameobj"}}};
    static const std::vector<Field> nameobj = {{"name", T::kStr, {"zone-a", "node-a", ""}}};
    static const std::vector<Field> ref = {{"kind", T::kStr, {"Pod"}}, {"name", T::kStr, {"p"}}};
    static const std::vector<Field> none;
    if (name == "meta") return meta;
    if (name == "service") return service;
    if (name == "spec") return spec;
    if (name == "svcport") return svcport;
    if (name == "sac") return sac;
    if (name == "clientip") return clientip;
    if (name == "status") return status;
    if (name == "lb") return lb;
    if (name == "ingress") return ingress;
    if (name == "slice") return slice;
    if (name == "sliceport") return sliceport;
    if (name == "endpoint") return endpoint;
    if (name == "conditions") return conditions;
    if (name == "hints") return hints;
    if (name == "nameobj") return nameobj;
    if (name == "ref") return ref;
    return none;
  }

  // An object of a schema: each field present or not, now and then null, in
  // schema order or shuffled, one maybe twice, an unknown one maybe added.
  std::string obj(const std::string& schemaName, int depth, std::vector<std::string> extra = {}) {
    if (depth > 12) return "{}";
    const std::vector<Field>& fields = schema(schemaName);
    std::vector<std::string> members = std::move(extra);
    for (const Field& fd : fields) {
      const int presence = f_.ConsumeIntegralInRange(0, 15);
      if (presence < 3) continue;  // absent
      std::string v = presence == 3 ? "null" : value(fd, depth + 1);
      members.push_back(key(fd.name, depth + 1) + v);
    }
    if (!members.empty() && rare(16)) {
      members.push_back(members[f_.ConsumeIntegralInRange<size_t>(0, members.size() - 1)]);  // a field twice
    }
    if (rare(8)) members.push_back(key("extra", depth + 1) + unknownValue(depth + 1));
    if (members.size() > 1 && rare(4)) {
      // Shuffled (kubectl sorts keys; hand-written input has any order).
      for (size_t i = members.size() - 1; i > 0; --i) {
        std::swap(members[i], members[f_.ConsumeIntegralInRange<size_t>(0, i)]);
      }
    } else if (rare(4)) {
      std::sort(members.begin(), members.end());  // kubectl's order (roughly: by the quoted key)
    }
    return object(members, depth);
  }

  // A List item: a Service, an EndpointSlice, something else, or not an object.
  std::string item(int depth, int kindPlace) {
    (void)kindPlace;
    const int what = f_.ConsumeIntegralInRange(0, 31);
    if (what == 31) return scalarOfOtherType(depth);
    const bool isService = what < 16;
    // The item's kind: its own, another, none, or of the wrong type.
    std::vector<std::string> extra;
    const int k = f_.ConsumeIntegralInRange(0, 31);
    if (k < 26) {
      extra.push_back(key("kind", depth + 1) + str(isService ? "Service" : "EndpointSlice"));
    } else if (k == 26) {
      extra.push_back(key("kind", depth + 1) + str(isService ? "EndpointSlice" : "Service"));
    } else if (k == 27) {
      extra.push_back(key("kind", depth + 1) + str("Pod"));
    } else if (k == 28) {
      extra.push_back(key("kind", depth + 1) + scalarOfOtherType(depth + 1));
    }  // else no kind
    return obj(isService ? "service" : "slice", depth, std::move(extra));
  }

  // Now and then a syntax error: a byte dropped, changed or added, or the end cut.
  std::string corrupt(std::string doc) {
    const int how = 31 - f_.ConsumeIntegralInRange(0, 31);  // 31 when the bytes have run out
    if (doc.empty() || how >= 5) return doc;
    const size_t at = f_.ConsumeIntegralInRange<size_t>(0, doc.size() - 1);
    switch (how) {
      case 0:
        doc.erase(at, 1);
        break;
      case 1:
        doc[at] = pick({",", "}", "]", "\"", "\\", " ", "x"})[0];
        break;
      case 2:
        if (rare(8)) {
          doc.insert(at, 1, '\0');
        } else {
          doc.insert(at, pick({",", "}", "]", "\"", "\\", "\t", "\x01"}));
        }
        break;
      case 3:
        doc.resize(at);
        break;
      default:
        doc.insert(at, "\n");
        break;
    }
    return doc;
  }

  // True one time in n; false when the bytes have run out (the benign choice).
  bool rare(int n) { return f_.ConsumeIntegralInRange(0, n - 1) == n - 1; }

  FuzzedDataProvider& f_;
  bool nl_ = false, space_ = false;
  int indentUnit_ = 0;
};

}  // namespace kipvs_fuzz
