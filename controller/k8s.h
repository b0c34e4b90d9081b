#pragma once
// The Kubernetes objects kipvs needs (Services, EndpointSlices), as plain
// values, and a parser for kubectl's JSON. Only the fields that shape the IPVS
// table are kept. Values stay close to the API (strings where the API has
// strings) so that desired() can report what the user wrote; enums where the
// API has a closed set.
//
// Errors: malformed JSON fails the whole input (Status kParse, with byte
// offset and line:column). A structurally wrong object (a port that is not a
// number, no metadata.name) is skipped and recorded in Cluster::errors; the
// rest of the input goes on.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controller/short_string.h"
#include "ipvs/default_box.h"
#include "netlink/status.h"

namespace kipvs::controller {

// An error tied to one Kubernetes object; that object is skipped, the rest go on.
struct ObjectError {
  std::string kind;       // "Service", "EndpointSlice"
  std::string name;       // "namespace/name"
  std::string message;
  std::string toString() const { return kind + " " + name + ": " + message; }
  auto operator<=>(const ObjectError&) const = default;
};

// Labels or annotations: each key once (the first, as a JSON reader's lookup
// would find it), in input order. A flat vector: objects carry a handful, and
// desired() looks up a few by name; a std::map costs a node per entry.
using StringMap = std::vector<std::pair<std::string, std::string>>;
// The value of key in m (the first), nullptr when absent.
const std::string* findIn(const StringMap& m, std::string_view key);

// The labels and annotations kipvs reads: the parsers keep only these, still
// checking that every value is a string. A kubectl dump carries many more
// (the Service's labels mirrored on each slice, Helm's, and
// kubectl.kubernetes.io/last-applied-configuration, the whole manifest again
// for every object applied with kubectl), none of which the desired state needs.
bool isKeptLabel(std::string_view key);       // kubernetes.io/service-name, service.kubernetes.io/...
bool isKeptAnnotation(std::string_view key);  // kipvs.io/...

struct ObjectMeta {
  std::string ns;  // metadata.namespace ("namespace" is a C++ keyword)
  std::string name;
  StringMap labels;
  StringMap annotations;

  std::string key() const { return ns + "/" + name; }  // "default/kubernetes"
  // nullptr when absent.
  const std::string* label(std::string_view k) const;
  const std::string* annotation(std::string_view k) const;
};

// --- Service (core/v1) -------------------------------------------------------

enum class ServiceType : uint8_t { kClusterIP, kNodePort, kLoadBalancer, kExternalName };
enum class TrafficPolicy : uint8_t { kCluster, kLocal };  // absent = Cluster
enum class SessionAffinity : uint8_t { kNone, kClientIP };

const char* serviceTypeName(ServiceType t);  // "ClusterIP", ...

// The API's spellings, as the parser reads them (absent/"" is the API's
// default); nullopt for anything else.
std::optional<ServiceType> serviceTypeOf(std::string_view s);          // "" = ClusterIP
std::optional<TrafficPolicy> trafficPolicyOf(std::string_view s);      // "" = Cluster
std::optional<SessionAffinity> sessionAffinityOf(std::string_view s);  // "" = None

// targetPort: an int or a named container port. Unused by IPVS (the
// EndpointSlices carry the resolved port) but kept for display.
struct IntOrString {
  bool isString = false;
  int64_t number = 0;
  std::string text;
  std::string toString() const { return isString ? text : std::to_string(number); }
  bool operator==(const IntOrString&) const = default;
};

struct ServicePort {
  std::string name;            // "" when unnamed (single-port Services)
  std::string protocol = "TCP";  // as written; desired() rejects anything but TCP/UDP/SCTP
  int64_t port = 0;            // wide so that out-of-range values reach validation intact
  IntOrString targetPort;
  int64_t nodePort = 0;        // 0 = none
};

struct LoadBalancerIngress {
  std::string ip;
  std::string hostname;
  std::string ipMode;          // "VIP", "Proxy" or "" (absent = VIP)
};

struct Service {
  ObjectMeta meta;
  ServiceType type = ServiceType::kClusterIP;
  std::string clusterIP;                  // "None" for headless
  std::vector<std::string> clusterIPs;    // primary first; wins over clusterIP when set
  std::vector<std::string> ipFamilies;    // "IPv4" / "IPv6" (informational)
  std::vector<ServicePort> ports;
  std::vector<std::string> externalIPs;
  SessionAffinity sessionAffinity = SessionAffinity::kNone;
  std::optional<int64_t> affinityTimeoutSeconds;  // sessionAffinityConfig.clientIP.timeoutSeconds
  TrafficPolicy externalTrafficPolicy = TrafficPolicy::kCluster;
  TrafficPolicy internalTrafficPolicy = TrafficPolicy::kCluster;
  int64_t healthCheckNodePort = 0;
  std::string externalName;
  std::string trafficDistribution;        // spec.trafficDistribution ("PreferClose", ...), informational
  std::vector<std::string> loadBalancerSourceRanges;
  std::vector<LoadBalancerIngress> lbIngress;  // status.loadBalancer.ingress
};

// --- EndpointSlice (discovery.k8s.io/v1) --------------------------------------

enum class AddressType : uint8_t { kIPv4, kIPv6, kFqdn };

struct EndpointPort {
  std::optional<std::string> name;  // nil and "" differ: kube-proxy ignores nil
  std::string protocol = "TCP";
  std::optional<int64_t> port;      // nil means "all ports" in the API; kube-proxy ignores it
};

struct EndpointConditions {
  std::optional<bool> ready;        // nil = ready
  std::optional<bool> serving;      // nil = serving
  std::optional<bool> terminating;  // nil = not terminating
  bool isReady() const { return ready.value_or(true); }
  bool isServing() const { return serving.value_or(true); }
  bool isTerminating() const { return terminating.value_or(false); }
};

// A list of strings that keeps its first element inline. An endpoint has one
// address nearly always, and a cluster's 100,000 endpoints should not cost
// 100,000 heap blocks (they were 20,000 of the 120,000 allocations of parse +
// desired at 2,000 Services; callgrind: 4 % fewer instructions without them).
class StringList {
 public:
  StringList() = default;
  StringList(std::initializer_list<std::string_view> items) {
    for (std::string_view s : items) push_back(s);
  }
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  const std::string& operator[](size_t i) const { return i == 0 ? first_ : rest_.get()[i - 1]; }
  void push_back(std::string_view s) {
    if (size_ == 0) {
      first_.assign(s);
    } else {
      rest_.mut().emplace_back(s);
    }
    ++size_;
  }
  void push_back(std::string&& s) {
    if (size_ == 0) {
      first_ = std::move(s);
    } else {
      rest_.mut().push_back(std::move(s));
    }
    ++size_;
  }
  void reserve(size_t n) {
    if (n > 1) rest_.mut().reserve(n - 1);
  }
  bool operator==(const StringList& o) const { return size_ == o.size_ && first_ == o.first_ && rest_ == o.rest_; }

  class Iterator {
   public:
    using value_type = std::string;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    Iterator(const StringList* l, size_t i) : list_(l), i_(i) {}
    const std::string& operator*() const { return (*list_)[i_]; }
    const std::string* operator->() const { return &(*list_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator t = *this;
      ++i_;
      return t;
    }
    bool operator==(const Iterator& o) const { return i_ == o.i_; }

   private:
    const StringList* list_ = nullptr;
    size_t i_ = 0;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size_}; }

 private:
  // Endpoints have one address (kube-proxy reads only the first): the rest
  // out of line, 48 bytes in all where a plain vector's list took 64.
  std::string first_;
  ipvs::DefaultBox<std::vector<std::string>> rest_;
  uint32_t size_ = 0;
};

struct EndpointHints {
  std::vector<std::string> forZones;  // hints.forZones[].name
  std::vector<std::string> forNodes;  // hints.forNodes[].name
  bool operator==(const EndpointHints&) const = default;
};

struct Endpoint {
  StringList addresses;                // kube-proxy uses addresses[0]
  EndpointConditions conditions;
  ShortString nodeName;                // "" when absent
  ShortString zone;                    // "" when absent
  // Out of line: most endpoints carry none, and inline the two lists were 48
  // of an endpoint's 184 bytes (100,000 endpoints at 10,000 x 10: 4.8 MB).
  ipvs::DefaultBox<EndpointHints> hints;
  const std::vector<std::string>& hintZones() const { return hints.get().forZones; }
  const std::vector<std::string>& hintNodes() const { return hints.get().forNodes; }
};

// "IPv4", "IPv6", "FQDN" (required: "" is nullopt).
std::optional<AddressType> addressTypeOf(std::string_view s);

struct EndpointSlice {
  ObjectMeta meta;
  AddressType addressType = AddressType::kIPv4;
  std::vector<EndpointPort> ports;
  std::vector<Endpoint> endpoints;

  // The owning Service's name (label kubernetes.io/service-name), or "" when absent.
  std::string_view serviceName() const;
};

inline constexpr std::string_view kLabelServiceName = "kubernetes.io/service-name";
// The namespace an object error names when the object's namespace does not
// parse (no namespace can be spelled so: it is a DNS label).
inline constexpr std::string_view kUnknownNamespace = "?";

// --- Cluster -----------------------------------------------------------------

struct Cluster {
  std::vector<Service> services;
  std::vector<EndpointSlice> slices;
  std::vector<ObjectError> errors;  // objects the parser skipped (computeDesired carries them over)

  // Appends other. An object (kind, namespace/name) already present is
  // replaced by other's copy: a later file overrides an earlier one.
  void merge(Cluster&& other);
  // All parts merged in order, as merge() one by one would, with one index
  // of names for all (merge() indexes the growing result on every call).
  static Cluster merged(std::vector<Cluster>&& parts);
};

// What the parser did, for tests and benchmarks.
struct ParseStats {
  // Lists parsed in chunks (itemsInChunks): through to the end with every
  // guess at a chunk's start verified (the first thread may have parsed every
  // chunk itself); or the second thread's work (from some chunk on) dropped:
  // a guess was no item boundary, an error or an item to judge on one thread.
  int splitsUsed = 0;
  int splitsDropped = 0;
  int itemsByHelper = 0;  // items the second thread parsed that went into the result
  int chunksByHelper = 0; // chunks the second thread parsed whole, of Lists it took part in (splitsUsed)
  int takenOver = 0;      // ... chunks the first thread finished, the second having stopped inside
  int wholeDocument = 0;  // inputs the streaming parser left to the whole-document one
  int itemsByDom = 0;     // List items read through the DOM reader (the fast path gave them up, or was off)
  int filesStreamed = 0;  // files parsed as they were read, a chunk at a time (declined ones too)
  int filesMapped = 0;    // files parsed from a mapping of the file
};

// How to parse; the defaults are what kipvs uses (tests and benchmarks vary them).
struct ParseOptions {
  // Split a large List's items over two threads (same result as one thread).
  bool parallel = true;
  size_t parallelMinBytes = size_t{1} << 20;  // ... when they span at least this much
  // A regular file is mapped; false, or where mapping fails: it is read
  // chunkBytes at a time as the parse goes (tests: a few bytes).
  bool mapFiles = true;
  size_t chunkBytes = size_t{256} << 10;
  // Set: the mapped files are left mapped, held here, for the caller to drop
  // when it has a CPU to spare (unmapping kubectl's 78 MB of 10,000 Services
  // took 14-29 ms under qemu, on the way to a reconcile's first write).
  // Unset: unmapped as the parse returns.
  std::vector<std::shared_ptr<const void>>* keepMapped = nullptr;
  ParseStats* stats = nullptr;                // filled in when set
  // List items straight into the model (SAX events, no DOM); an item it
  // cannot take is read again, from the same bytes, by the DOM reader.
  // Off: every item through the DOM reader, the reference the fast path is
  // tested against.
  bool fastItems = true;
  // Tests: the second thread waits this long before it starts (so that the
  // first one takes its work over).
  std::chrono::milliseconds helperDelay{0};
  // Tests: called by the first thread (0) on each chunk boundary it lands
  // on, before it claims the chunk there, and (2) once it has asked the
  // second to stop, to take the rest of that one's chunk over; by the second
  // (1) on each chunk it has claimed, before it parses it. A hook that waits
  // forces an order.
  std::function<void(int thread, size_t chunk)> chunkHook;
};

// Parses a `kubectl get ... -o json` document: a List (items carry kind), a
// ServiceList / EndpointSliceList (items may omit kind), or a single Service
// / EndpointSlice. Items of other kinds are ignored. sourceName names the
// input in messages ("cluster.json", "-").
StatusOr<Cluster> parseJson(std::string_view text, std::string_view sourceName, const ParseOptions& options = {});
// path "-" reads stdin.
StatusOr<Cluster> parseFile(const std::string& path, const ParseOptions& options = {});
// All files merged in order (later ones override earlier objects of the same name).
StatusOr<Cluster> parseFiles(const std::vector<std::string>& paths, const ParseOptions& options = {});

}  // namespace kipvs::controller
