#include "controller/item_builder.h"

#include <algorithm>
#include <iterator>
#include <optional>

namespace kipvs::controller::detail {

// Objects and arrays the builder reads; anything else is skipped.
enum class ItemBuilder::Ctx : uint8_t {
  kItem,
  kMeta,
  kLabels,
  kAnnotations,
  kSpec,
  kSvcPorts,        // array of kSvcPort
  kSvcPort,
  kAffinityConfig,  // spec.sessionAffinityConfig
  kClientIP,
  kStatus,
  kLoadBalancer,
  kIngressList,     // array of kIngress
  kIngress,
  kSlicePorts,      // array of kSlicePort
  kSlicePort,
  kEndpoints,       // array of kEndpoint
  kEndpoint,
  kConditions,
  kHints,
  kNameList,        // hints.forZones / forNodes: array of kNameObj
  kNameObj,
  kStrList,         // array of strings (strList_)
  kAddrList,        // an endpoint's addresses
};

// Fields, across all objects (a field's bit in Frame::seen).
enum class ItemBuilder::F : uint8_t {
  kUnknown,
  kKind,
  kApiVersion,
  kMetadata,
  kSpec,
  kStatus,
  kAddressType,
  kPorts,
  kEndpoints,
  kName,
  kNamespace,
  kLabels,
  kAnnotations,
  kEntry,  // a label or annotation
  kType,
  kClusterIP,
  kClusterIPs,
  kIpFamilies,
  kExternalIPs,
  kSessionAffinity,
  kSessionAffinityConfig,
  kExternalTrafficPolicy,
  kInternalTrafficPolicy,
  kHealthCheckNodePort,
  kExternalName,
  kTrafficDistribution,
  kLoadBalancerSourceRanges,
  kProtocol,
  kPort,
  kNodePort,
  kTargetPort,
  kClientIP,
  kTimeoutSeconds,
  kLoadBalancer,
  kIngress,
  kIp,
  kHostname,
  kIpMode,
  kAddresses,
  kConditions,
  kNodeName,
  kZone,
  kHints,
  kReady,
  kServing,
  kTerminating,
  kForZones,
  kForNodes,
};

namespace {

using Ctx = ItemBuilder::Ctx;
using F = ItemBuilder::F;

// The fields the DOM reader looks up, per object (k8s.cc: parseService, parseSlice, Reader::meta).
F lookup(Ctx ctx, ItemBuilder::Outcome kind, std::string_view k) {
  switch (ctx) {
    case Ctx::kItem:
      if (k == "kind") return F::kKind;
      if (k == "apiVersion") return F::kApiVersion;
      if (kind == ItemBuilder::Outcome::kOtherKind) return F::kUnknown;
      if (k == "metadata") return F::kMetadata;
      if (kind == ItemBuilder::Outcome::kService) {
        if (k == "spec") return F::kSpec;
        if (k == "status") return F::kStatus;
      } else {
        if (k == "addressType") return F::kAddressType;
        if (k == "ports") return F::kPorts;
        if (k == "endpoints") return F::kEndpoints;
      }
      return F::kUnknown;
    case Ctx::kMeta:
      if (k == "name") return F::kName;
      if (k == "namespace") return F::kNamespace;
      if (k == "labels") return F::kLabels;
      if (k == "annotations") return F::kAnnotations;
      return F::kUnknown;
    case Ctx::kSpec:
      if (k == "type") return F::kType;
      if (k == "clusterIP") return F::kClusterIP;
      if (k == "clusterIPs") return F::kClusterIPs;
      if (k == "ipFamilies") return F::kIpFamilies;
      if (k == "ports") return F::kPorts;
      if (k == "externalIPs") return F::kExternalIPs;
      if (k == "sessionAffinity") return F::kSessionAffinity;
      if (k == "sessionAffinityConfig") return F::kSessionAffinityConfig;
      if (k == "externalTrafficPolicy") return F::kExternalTrafficPolicy;
      if (k == "internalTrafficPolicy") return F::kInternalTrafficPolicy;
      if (k == "healthCheckNodePort") return F::kHealthCheckNodePort;
      if (k == "externalName") return F::kExternalName;
      if (k == "trafficDistribution") return F::kTrafficDistribution;
      if (k == "loadBalancerSourceRanges") return F::kLoadBalancerSourceRanges;
      return F::kUnknown;
    case Ctx::kSvcPort:
      if (k == "name") return F::kName;
      if (k == "protocol") return F::kProtocol;
      if (k == "port") return F::kPort;
      if (k == "nodePort") return F::kNodePort;
      if (k == "targetPort") return F::kTargetPort;
      return F::kUnknown;
    case Ctx::kAffinityConfig:
      return k == "clientIP" ? F::kClientIP : F::kUnknown;
    case Ctx::kClientIP:
      return k == "timeoutSeconds" ? F::kTimeoutSeconds : F::kUnknown;
    case Ctx::kStatus:
      return k == "loadBalancer" ? F::kLoadBalancer : F::kUnknown;
    case Ctx::kLoadBalancer:
      return k == "ingress" ? F::kIngress : F::kUnknown;
    case Ctx::kIngress:
      if (k == "ip") return F::kIp;
      if (k == "hostname") return F::kHostname;
      if (k == "ipMode") return F::kIpMode;
      return F::kUnknown;
    case Ctx::kSlicePort:
      if (k == "name") return F::kName;
      if (k == "protocol") return F::kProtocol;
      if (k == "port") return F::kPort;
      return F::kUnknown;
    case Ctx::kEndpoint:
      if (k == "addresses") return F::kAddresses;
      if (k == "conditions") return F::kConditions;
      if (k == "nodeName") return F::kNodeName;
      if (k == "zone") return F::kZone;
      if (k == "hints") return F::kHints;
      return F::kUnknown;
    case Ctx::kConditions:
      if (k == "ready") return F::kReady;
      if (k == "serving") return F::kServing;
      if (k == "terminating") return F::kTerminating;
      return F::kUnknown;
    case Ctx::kHints:
      if (k == "forZones") return F::kForZones;
      if (k == "forNodes") return F::kForNodes;
      return F::kUnknown;
    case Ctx::kNameObj:
      return k == "name" ? F::kName : F::kUnknown;
    default:
      return F::kUnknown;
  }
}

bool isArrayCtx(Ctx c) {
  return c == Ctx::kSvcPorts || c == Ctx::kIngressList || c == Ctx::kSlicePorts || c == Ctx::kEndpoints ||
         c == Ctx::kNameList || c == Ctx::kStrList || c == Ctx::kAddrList;
}

}  // namespace

void ItemBuilder::reset(std::string_view defaultKind, int depth, int maxDepth) {
  frames_.clear();
  skip_ = 0;
  depth_ = depth;
  maxDepth_ = maxDepth;
  defaultKind_.assign(defaultKind);
  provisionalKind_ = {};
  kindRequired_ = false;
  apiVersion_ = ApiVersion::kAbsent;
  kind_ = outcome_ = Outcome::kNone;
  gaveUp_ = false;
  addressTypeSet_ = false;
  portSet_ = false;
  service_ = Service();
  slice_ = EndpointSlice();
  endpoints_.clear();
}

bool ItemBuilder::decideKind(std::string_view kind) {
  if (kind.empty()) return giveUp();  // "item has no kind"
  if (isListKind(kind)) return giveUp();  // a List inside the List: the DOM reader flattens it
  if (kind == "Service") {
    kind_ = Outcome::kService;
  } else if (kind == "EndpointSlice") {
    kind_ = Outcome::kSlice;
  } else {
    kind_ = Outcome::kOtherKind;
  }
  return true;
}

ObjectMeta& ItemBuilder::meta() { return kind_ == Outcome::kService ? service_.meta : slice_.meta; }

bool ItemBuilder::Key(const char* s, rapidjson::SizeType n, bool) {
  if (skip_) return true;
  Frame& f = top();
  std::string_view k(s, n);
  if (f.ctx == Ctx::kLabels || f.ctx == Ctx::kAnnotations) {
    keepEntry_ = f.ctx == Ctx::kLabels ? isKeptLabel(k) : isKeptAnnotation(k);
    if (keepEntry_) key_.assign(k);
    f.field = F::kEntry;  // its value is checked to be a string either way
    return true;
  }
  if (f.ctx == Ctx::kItem && kind_ == Outcome::kNone && k != "apiVersion" && k != "kind") {
    // A field before the kind. In a typed List the List's item kind
    // applies; kubectl sorts keys, so an EndpointSlice's addressType and
    // endpoints come before its kind. Either is provisional: a different
    // kind named later (the DOM reader would go by it) gives up.
    if (!defaultKind_.empty()) {
      provisionalKind_ = defaultKind_;
    } else if (k == "addressType" || k == "endpoints") {
      provisionalKind_ = "EndpointSlice";
      kindRequired_ = true;  // a plain List's item must name its kind
    } else {
      return giveUp();
    }
    if (!decideKind(provisionalKind_)) return false;
  }
  F field = lookup(f.ctx, kind_, k);
  if (field != F::kUnknown) {
    const uint64_t bit = uint64_t{1} << static_cast<unsigned>(field);
    if (f.seen & bit) return giveUp();  // given twice: the DOM reader says so
    f.seen |= bit;
  }
  f.field = field;
  return true;
}

bool ItemBuilder::Null() {
  if (skip_) return true;
  if (frames_.empty() || isArrayCtx(top().ctx)) return giveUp();  // an item or element that must be typed
  Ctx c = top().ctx;
  if (c == Ctx::kLabels || c == Ctx::kAnnotations) return giveUp();  // values must be strings
  return true;  // null reads as absent
}

bool ItemBuilder::other() {
  if (skip_) return true;
  if (frames_.empty() || isArrayCtx(top().ctx)) return giveUp();
  F field = top().field;
  return field == F::kUnknown ? true : giveUp();
}

bool ItemBuilder::Bool(bool b) {
  if (skip_) return true;
  if (frames_.empty() || isArrayCtx(top().ctx)) return giveUp();
  Frame& f = top();
  if (f.field == F::kUnknown) return true;
  if (f.ctx != Ctx::kConditions) return giveUp();
  EndpointConditions& c = endpoints_.back().conditions;
  switch (f.field) {
    case F::kReady:
      c.ready = b;
      return true;
    case F::kServing:
      c.serving = b;
      return true;
    case F::kTerminating:
      c.terminating = b;
      return true;
    default:
      return giveUp();
  }
}

bool ItemBuilder::integer(int64_t v) {
  if (skip_) return true;
  if (frames_.empty() || isArrayCtx(top().ctx)) return giveUp();
  Frame& f = top();
  if (f.field == F::kUnknown) return true;
  switch (f.ctx) {
    case Ctx::kSvcPort: {
      ServicePort& p = service_.ports.back();
      if (f.field == F::kPort) {
        p.port = v;
        portSet_ = true;
      } else if (f.field == F::kNodePort) {
        p.nodePort = v;
      } else if (f.field == F::kTargetPort) {
        p.targetPort.number = v;
      } else {
        return giveUp();
      }
      return true;
    }
    case Ctx::kSpec:
      if (f.field != F::kHealthCheckNodePort) return giveUp();
      service_.healthCheckNodePort = v;
      return true;
    case Ctx::kClientIP:
      service_.affinityTimeoutSeconds = v;  // the only field read here
      return true;
    case Ctx::kSlicePort:
      if (f.field != F::kPort) return giveUp();
      slice_.ports.back().port = v;
      return true;
    default:
      return giveUp();
  }
}

bool ItemBuilder::String(const char* s, rapidjson::SizeType n, bool) {
  if (skip_) return true;
  if (frames_.empty()) return giveUp();
  Frame& f = top();
  std::string_view v(s, n);
  if (f.ctx == Ctx::kStrList) {
    strList_->emplace_back(v);
    return true;
  }
  if (f.ctx == Ctx::kAddrList) {
    endpoints_.back().addresses.push_back(v);
    return true;
  }
  if (isArrayCtx(f.ctx)) return giveUp();  // elements must be objects
  if (f.field == F::kUnknown) return true;
  switch (f.ctx) {
    case Ctx::kItem:
      if (f.field == F::kKind) {
        kindRequired_ = false;
        if (kind_ == Outcome::kNone) return decideKind(v);
        return v == provisionalKind_ ? true : giveUp();
      }
      if (f.field == F::kApiVersion) {
        apiVersion_ = v == "v1"                    ? ApiVersion::kCoreV1
                      : v == "discovery.k8s.io/v1" ? ApiVersion::kDiscoveryV1
                                                   : ApiVersion::kOther;
        return true;
      }
      if (f.field != F::kAddressType) return giveUp();
      if (auto t = addressTypeOf(v)) {
        slice_.addressType = *t;
        addressTypeSet_ = true;
        return true;
      }
      return giveUp();
    case Ctx::kMeta:
      if (f.field == F::kName) {
        meta().name.assign(v);
      } else if (f.field == F::kNamespace) {
        meta().ns.assign(v);
      } else {
        return giveUp();
      }
      return true;
    case Ctx::kLabels:
    case Ctx::kAnnotations: {
      StringMap& m = f.ctx == Ctx::kLabels ? meta().labels : meta().annotations;
      if (!keepEntry_) return true;
      if (findIn(m, key_)) return giveUp();  // given twice: the DOM reader says so
      m.emplace_back(key_, v);
      return true;
    }
    case Ctx::kSpec:
      switch (f.field) {
        case F::kType:
          return set(serviceTypeOf(v), service_.type);
        case F::kClusterIP:
          service_.clusterIP.assign(v);
          return true;
        case F::kSessionAffinity:
          return set(sessionAffinityOf(v), service_.sessionAffinity);
        case F::kExternalTrafficPolicy:
          return set(trafficPolicyOf(v), service_.externalTrafficPolicy);
        case F::kInternalTrafficPolicy:
          return set(trafficPolicyOf(v), service_.internalTrafficPolicy);
        case F::kExternalName:
          service_.externalName.assign(v);
          return true;
        case F::kTrafficDistribution:
          service_.trafficDistribution.assign(v);
          return true;
        default:
          return giveUp();
      }
    case Ctx::kSvcPort: {
      ServicePort& p = service_.ports.back();
      if (f.field == F::kName) {
        p.name.assign(v);
      } else if (f.field == F::kProtocol) {
        p.protocol.assign(v);
      } else if (f.field == F::kTargetPort) {
        p.targetPort.isString = true;
        p.targetPort.text.assign(v);
      } else {
        return giveUp();
      }
      return true;
    }
    case Ctx::kIngress: {
      LoadBalancerIngress& in = service_.lbIngress.back();
      if (f.field == F::kIp) {
        in.ip.assign(v);
      } else if (f.field == F::kHostname) {
        in.hostname.assign(v);
      } else if (f.field == F::kIpMode) {
        in.ipMode.assign(v);
      } else {
        return giveUp();
      }
      return true;
    }
    case Ctx::kSlicePort: {
      EndpointPort& p = slice_.ports.back();
      if (f.field == F::kName) {
        p.name.emplace(v);
      } else if (f.field == F::kProtocol) {
        p.protocol.assign(v);
      } else {
        return giveUp();
      }
      return true;
    }
    case Ctx::kEndpoint: {
      Endpoint& e = endpoints_.back();
      if (f.field == F::kNodeName) {
        e.nodeName.assign(v);
      } else if (f.field == F::kZone) {
        e.zone.assign(v);
      } else {
        return giveUp();
      }
      return true;
    }
    case Ctx::kNameObj:
      if (f.field != F::kName) return giveUp();
      name_.assign(v);
      return true;
    default:
      return giveUp();
  }
}

bool ItemBuilder::StartObject() { return open(true); }
bool ItemBuilder::StartArray() { return open(false); }

bool ItemBuilder::open(bool isObject) {
  // Nesting as the DOM reader counts it (DepthLimit): past the limit, it reports the error.
  if (depth_ + static_cast<int>(frames_.size()) + skip_ + 1 > maxDepth_) return giveUp();
  if (skip_) {
    ++skip_;
    return true;
  }
  if (frames_.empty()) {
    if (!isObject) return giveUp();  // "item is array, not an object"
    frames_.push_back({Ctx::kItem, F::kUnknown});
    return true;
  }
  Frame& f = top();
  std::optional<Ctx> child;  // what this value must be read as; nullopt: the wrong type
  bool wantObject = true;
  if (isArrayCtx(f.ctx)) {
    switch (f.ctx) {
      case Ctx::kSvcPorts:
        service_.ports.emplace_back();
        portSet_ = false;
        child = Ctx::kSvcPort;
        break;
      case Ctx::kIngressList:
        service_.lbIngress.emplace_back();
        child = Ctx::kIngress;
        break;
      case Ctx::kSlicePorts:
        slice_.ports.emplace_back();
        child = Ctx::kSlicePort;
        break;
      case Ctx::kEndpoints:
        endpoints_.emplace_back();
        child = Ctx::kEndpoint;
        break;
      case Ctx::kNameList:
        name_.clear();
        child = Ctx::kNameObj;
        break;
      default:
        break;  // kStrList, kAddrList: strings only
    }
  } else {
    if (f.field == F::kUnknown) {
      skip_ = 1;
      return true;
    }
    auto list = [&](Ctx c) {
      wantObject = false;
      child = c;
    };
    auto strings = [&](std::vector<std::string>& v) {
      strList_ = &v;
      list(Ctx::kStrList);
    };
    switch (f.ctx) {
      case Ctx::kItem:
        if (f.field == F::kMetadata) child = Ctx::kMeta;
        if (f.field == F::kSpec) child = Ctx::kSpec;
        if (f.field == F::kStatus) child = Ctx::kStatus;
        if (f.field == F::kPorts) list(Ctx::kSlicePorts);
        if (f.field == F::kEndpoints) list(Ctx::kEndpoints);
        break;
      case Ctx::kMeta:
        if (f.field == F::kLabels) child = Ctx::kLabels;
        if (f.field == F::kAnnotations) child = Ctx::kAnnotations;
        break;
      case Ctx::kSpec:
        if (f.field == F::kClusterIPs) strings(service_.clusterIPs);
        if (f.field == F::kIpFamilies) strings(service_.ipFamilies);
        if (f.field == F::kExternalIPs) strings(service_.externalIPs);
        if (f.field == F::kLoadBalancerSourceRanges) strings(service_.loadBalancerSourceRanges);
        if (f.field == F::kPorts) list(Ctx::kSvcPorts);
        if (f.field == F::kSessionAffinityConfig) child = Ctx::kAffinityConfig;
        break;
      case Ctx::kAffinityConfig:
        if (f.field == F::kClientIP) child = Ctx::kClientIP;
        break;
      case Ctx::kStatus:
        if (f.field == F::kLoadBalancer) child = Ctx::kLoadBalancer;
        break;
      case Ctx::kLoadBalancer:
        if (f.field == F::kIngress) list(Ctx::kIngressList);
        break;
      case Ctx::kEndpoint:
        if (f.field == F::kAddresses) list(Ctx::kAddrList);
        if (f.field == F::kConditions) child = Ctx::kConditions;
        if (f.field == F::kHints) child = Ctx::kHints;
        break;
      case Ctx::kHints:
        if (f.field == F::kForZones) nameList_ = &endpoints_.back().hints.mut().forZones;
        if (f.field == F::kForNodes) nameList_ = &endpoints_.back().hints.mut().forNodes;
        if (f.field == F::kForZones || f.field == F::kForNodes) list(Ctx::kNameList);
        break;
      default:
        break;  // scalars only
    }
  }
  if (!child || wantObject != isObject) return giveUp();
  frames_.push_back({*child, F::kUnknown});
  return true;
}

bool ItemBuilder::EndObject(rapidjson::SizeType) { return close(); }
bool ItemBuilder::EndArray(rapidjson::SizeType) { return close(); }

bool ItemBuilder::close() {
  if (skip_) {
    --skip_;
    return true;
  }
  switch (top().ctx) {
    case Ctx::kSvcPort:
      if (!portSet_) return giveUp();  // "port: missing"
      break;
    case Ctx::kNameObj:
      nameList_->push_back(std::move(name_));
      name_.clear();
      break;
    case Ctx::kItem:
      frames_.pop_back();
      return endItem();
    default:
      break;
  }
  frames_.pop_back();
  return true;
}

bool ItemBuilder::endItem() {
  if (kindRequired_) return giveUp();
  if (kind_ == Outcome::kNone) {
    if (defaultKind_.empty()) return giveUp();
    if (!decideKind(defaultKind_)) return false;
  }
  if (kind_ == Outcome::kOtherKind) {
    outcome_ = kind_;
    return true;
  }
  // Another group's Service (Knative's), an older EndpointSlice version: the
  // DOM reader decides (itemApiVersion in k8s.cc).
  if (apiVersion_ != ApiVersion::kAbsent &&
      apiVersion_ != (kind_ == Outcome::kService ? ApiVersion::kCoreV1 : ApiVersion::kDiscoveryV1)) {
    return giveUp();
  }
  ObjectMeta& m = meta();
  if (m.name.empty()) return giveUp();  // metadata or its name missing
  if (kind_ == Outcome::kSlice && !addressTypeSet_) return giveUp();
  if (m.ns.empty()) m.ns = "default";  // as Reader::meta
  if (kind_ == Outcome::kSlice) {
    slice_.endpoints.reserve(endpoints_.size());
    std::move(endpoints_.begin(), endpoints_.end(), std::back_inserter(slice_.endpoints));
    endpoints_.clear();
  }
  outcome_ = kind_;
  return true;
}

}  // namespace kipvs::controller::detail
