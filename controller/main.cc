// kipvs: the command line. Parses flags, wires the real kernel and host
// adapters into the pure pipeline, and maps results to exit codes:
// 0 converged, 1 partial failure (named on stderr), 2 usage or fatal error.

#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "controller/desired.h"
#include "controller/heap.h"
#include "controller/k8s.h"
#include "controller/netlink_host.h"
#include "controller/netns_lock.h"
#include "controller/reconcile.h"
#include "controller/render.h"
#include "ipvs/netlink_client.h"

namespace {

using namespace kipvs;
using namespace kipvs::controller;

constexpr const char* kUsage = R"(kipvs - program the kernel's IPVS load balancer for Kubernetes Services

Usage:
  kipvs reconcile -f FILE [-f FILE...] [flags]   one-shot: make the IPVS table match the cluster
  kipvs dump [--output text|json|ipvsadm]        print the live IPVS table
  kipvs version                                  print versions (kipvs, kernel IPVS)
  kipvs help                                     this text

reconcile reads `kubectl get services,endpointslices -A -o json` (a List, a
ServiceList/EndpointSliceList, or single objects; FILE "-" is stdin) or YAML
manifests (several documents; an input not starting with '{' or '[', unless
named *.json), computes the desired table (kube-proxy IPVS-mode semantics),
diffs it against the live kernel table and applies the smallest ordered set
of changes. A file that does not parse changes nothing. An invalid Service is
named and skipped: what it has in the kernel is kept as it is; the rest is
applied.

reconcile flags:
  -f, --filename FILE          input (repeatable)
  --dry-run                    print the plan, change nothing
  -o, --output text|json       plan and summary format (default text); json is one object
                               on stdout, also when the run stops early after the flags
                               were read (parse, lock, kernel: "fatal", exitCode 2)
  --node-name NAME             this node (externalTrafficPolicy/internalTrafficPolicy Local,
                               topology hints); default: the host name, lowercased (as
                               kubelet names the node)
  --node-ip IP                 NodePort address (repeatable); default: as kube-proxy,
                               every address of this host but the dummy's, loopback
                               and IPv6 link-local ones (lo's /32 included)
  --nodeport-addresses CIDRS   only node IPs within these CIDRs (comma list) get NodePorts
                               (a family with no CIDR listed keeps all its node IPs)
  --nodeport-range MIN-MAX     the cluster's --service-node-port-range (default
                               30000-32767): NodePort virtual servers on node
                               addresses in it are kipvs's; a nodePort outside it is
                               an error and gets none
  --zone ZONE                  this node's zone (topology hints, kipvs.io/zone-weights)
  --scheduler NAME             default scheduler (default rr); per Service:
                               annotation kipvs.io/scheduler, kipvs.io/scheduler-flags
  --proxy-name NAME            answer to Services labelled service.kubernetes.io/service-proxy-name=NAME
  --dummy-interface NAME       dummy interface the virtual IPs are local on (default kipvs0)
  --vip-mode route|address     how a VIP is made local on it. route (default): a local route,
                               `ip route show table local proto 241`; scales to many VIPs.
                               address: bound as an address (`ip addr show kipvs0`), as
                               kube-proxy does; binding n addresses costs the kernel O(n^2).
                               Switching converts what an earlier run made.
  --table-read proc|netlink    how the live table is read. proc (default): the virtual servers
                               over netlink, their real servers from /proc/net/ip_vs (at
                               10,000 x 10 ~60 % of the kernel time of a dests dump per
                               virtual server; in a larger table, those past 2,048 reads
                               of it are dumped). It does not show real-server thresholds
                               (ipvsadm -x/-y), so one set by hand on a virtual server
                               kipvs owns stays. netlink: a dests dump per virtual server,
                               every field
  --drain wait|skip            departing TCP real servers with connections stay at weight 0;
                               wait: poll until drained, then remove (default skip: a later run removes them)
  --drain-timeout SECONDS      give up waiting after this long (default 300)
  --no-sysctl                  do not set the net.ipv4.vs.* / ip_forward sysctls
  --allow-empty                apply an input with no Service, or with Services but no
                               EndpointSlice, even though it empties what kipvs owns in the
                               table (refused by default, exit 2: that is what a failed or
                               partial kubectl get looks like)
  --state-dir DIR              where kipvs records the virtual servers it made on this host's
                               own addresses (NodePorts; an externalIP or LoadBalancer IP naming
                               one, in route mode), so that it deletes them once unwanted, the
                               address gone from the node included: DIR/owned-netns-<cookie>, one
                               per network namespace (default /run/kipvs, which empties at boot
                               as the table does)
  --lock-timeout SECONDS       wait this long for another kipvs changing this network namespace's
                               IPVS table to finish (default 30; 0: do not wait); then exit 2,
                               changing nothing. A dry run takes no lock. A holder that
                               is no kipvs (no CAP_NET_ADMIN over this network namespace,
                               not listening, its listener gone) is not waited for: a
                               warning names it, and the run goes on.

dump flags:
  -o, --output text|json|ipvsadm
                               text: listing with each real server's share of connections
                               json: everything, counters and stats included
                               ipvsadm: rules that `ipvsadm -R` restores exactly

global flags:
  -v N                         log verbosity (glog; logs go to stderr; reconcile -v 1 logs its phases)

Exit status: 0 success; 1 some objects or kernel ops failed (the rest applied); 2 usage or fatal error.
)";

struct Args {
  std::vector<std::string> v;
  size_t i = 0;
  bool done() const { return i >= v.size(); }
  const std::string& peek() const { return v[i]; }
};

// "--name=value" or "--name value"; returns false if arg is not this flag.
bool takeValue(Args& a, const char* longName, const char* shortName, std::string* value, std::string* error) {
  const std::string& arg = a.peek();
  std::string ln = std::string("--") + longName;
  if (arg == ln || (shortName && arg == shortName)) {
    if (a.i + 1 >= a.v.size()) {
      *error = arg + " needs a value";
      return true;
    }
    *value = a.v[a.i + 1];
    a.i += 2;
    return true;
  }
  if (arg.rfind(ln + "=", 0) == 0) {
    *value = arg.substr(ln.size() + 1);
    ++a.i;
    return true;
  }
  return false;
}

bool parseUint(const std::string& s, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

// Ends a command without tearing down its data: freeing a 10k-service
// table and cluster model (millions of small allocations) costs more than
// the kernel takes to reclaim the whole address space.
[[noreturn]] void exitNow(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  _exit(code);
}

// Input files are mapped while they parse (controller/k8s.cc, Input::map):
// one truncated meanwhile faults where a read would have come up short. Say
// so, rather than die with "Bus error". Installed for the parse only, before
// which nothing is written to the kernel.
#define KIPVS_SIGBUS_WHAT "an input file shrank while it was being read (input files are mapped)"
void sigbusExit(const char* json, size_t jsonLen) {
  static constexpr char kMessage[] =
      "kipvs: SIGBUS: " KIPVS_SIGBUS_WHAT "; no kernel write comes before the whole input has parsed\n";
  ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  // With -o json, the one object on stdout a caller parses, as renderFatalJson writes it.
  if (json) ignored = ::write(STDOUT_FILENO, json, jsonLen);
  (void)ignored;
  _exit(2);
}
#define KIPVS_SIGBUS_JSON(dry) \
  "{\"dryRun\":" dry ",\"fatal\":{\"message\":\"SIGBUS: " KIPVS_SIGBUS_WHAT "\"},\"exitCode\":2}\n"
void onSigbus(int) { sigbusExit(nullptr, 0); }
void onSigbusJson(int) {
  static constexpr char kJson[] = KIPVS_SIGBUS_JSON("false");
  sigbusExit(kJson, sizeof(kJson) - 1);
}
void onSigbusJsonDryRun(int) {
  static constexpr char kJson[] = KIPVS_SIGBUS_JSON("true");
  sigbusExit(kJson, sizeof(kJson) - 1);
}
#undef KIPVS_SIGBUS_JSON
#undef KIPVS_SIGBUS_WHAT

int usageError(const std::string& msg) {
  std::cerr << "kipvs: " << msg << "\nRun 'kipvs help' for usage.\n";
  return 2;
}

// readStats: decode traffic counters in dumps; only `dump --output json`
// shows them (connection counts are read either way).
// parallelRead: a full read spreads its dests dumps over two sockets and
// threads (kipvs dump: a tenth faster at 10,000 Services in the VM; not for
// reconcile, whose read runs beside the parse, which needs the CPU).
// destsFromProc: a full read takes the real servers from /proc/net/ip_vs
// (reconcile; see ipvs/proc_table.h).
StatusOr<std::unique_ptr<ipvs::NetlinkIpvsClient>> openKernel(bool readStats = true, bool parallelRead = false,
                                                               bool destsFromProc = false) {
  ipvs::NetlinkIpvsClient::Options options;
  options.readStats = readStats;
  options.destsFromProc = destsFromProc;
  if (parallelRead && std::thread::hardware_concurrency() >= 2) options.dumpReaders = 2;
  auto c = ipvs::NetlinkIpvsClient::create(options);
  if (!c.isOk()) return c.status().withContext("cannot reach the kernel's IPVS");
  return c;
}

int cmdVersion() {
  std::cout << "kipvs " << KIPVS_VERSION << "\n";
  auto c = openKernel();
  if (!c.isOk()) {
    std::cout << "kernel IPVS: unavailable (" << c.status().toString() << ")\n";
    return 0;
  }
  auto info = (*c)->info();
  if (info.isOk()) {
    std::cout << "kernel IPVS " << info->versionString() << " (connection table size " << info->connTableSize << ")\n";
  }
  return 0;
}

int cmdDump(Args& a) {
  std::string output = "text", error;
  while (!a.done()) {
    if (takeValue(a, "output", "-o", &output, &error)) {
      if (!error.empty()) return usageError(error);
      continue;
    }
    if (a.peek() == "-h" || a.peek() == "--help") {
      std::cout << kUsage;
      return 0;
    }
    return usageError("dump: unknown argument " + a.peek());
  }
  if (output != "text" && output != "json" && output != "ipvsadm") {
    return usageError("dump: --output must be text, json or ipvsadm");
  }
  auto c = openKernel(output == "json", /*parallelRead=*/true);
  if (!c.isOk()) {
    std::cerr << "kipvs: " << c.status().toString() << "\n";
    return 2;
  }
  auto t = (*c)->dumpTable();
  if (!t.isOk()) {
    std::cerr << "kipvs: dump: " << t.status().toString() << "\n";
    return 2;
  }
  if (output == "ipvsadm") {
    for (const auto& k : renderIpvsadmRules(*t, std::cout)) {
      std::cerr << "kipvs: warning: " << k.toString() << " left out: ipvsadm rules cannot name its protocol\n";
    }
  } else if (output == "json") {
    renderTableJson(*t, std::cout);
  } else {
    renderTableText(*t, std::cout);
  }
  exitNow(0);
}

int cmdReconcile(Args& a) {
  ReconcileOptions opts;
  std::chrono::milliseconds lockTimeout = std::chrono::seconds(30);
  NetlinkHostNetwork::Options hostOptions;
  std::vector<std::string> files;
  std::vector<std::string> nodeIps;
  bool destsFromProc = true;
  std::string value, error;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) opts.node.nodeName = kubeletNodeName(host);
  while (!a.done()) {
    error.clear();
    const std::string& arg = a.peek();
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--dry-run") {
      opts.dryRun = true;
      ++a.i;
    } else if (arg == "--no-sysctl") {
      opts.manageSysctls = false;
      ++a.i;
    } else if (arg == "--allow-empty") {
      opts.allowEmpty = true;
      ++a.i;
    } else if (takeValue(a, "filename", "-f", &value, &error)) {
      // stdin reads once: a second "-" would read nothing and be blamed as an empty input.
      if (error.empty() && value == "-" && std::count(files.begin(), files.end(), "-") > 0) {
        return usageError("-f -: stdin given twice");
      }
      files.push_back(value);
    } else if (takeValue(a, "output", "-o", &value, &error)) {
      if (value == "text") {
        opts.output = OutputFormat::kText;
      } else if (value == "json") {
        opts.output = OutputFormat::kJson;
      } else if (error.empty()) {
        error = "--output must be text or json";
      }
    } else if (takeValue(a, "node-name", nullptr, &value, &error)) {
      opts.node.nodeName = value;
    } else if (takeValue(a, "node-ip", nullptr, &value, &error)) {
      nodeIps.push_back(value);
    } else if (takeValue(a, "nodeport-addresses", nullptr, &value, &error)) {
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) {
        if (item.empty()) continue;
        auto c = Cidr::parse(item);
        if (!c.isOk()) return usageError("--nodeport-addresses: " + c.status().message());
        opts.node.nodePortCidrs.push_back(*c);
      }
    } else if (takeValue(a, "nodeport-range", nullptr, &value, &error)) {
      auto dash = value.find('-');
      uint64_t lo = 0, hi = 0;
      if (dash == std::string::npos || !parseUint(value.substr(0, dash), 65535, &lo) ||
          !parseUint(value.substr(dash + 1), 65535, &hi) || lo == 0 || lo > hi) {
        return usageError("--nodeport-range wants MIN-MAX within 1-65535, got \"" + value + "\"");
      }
      opts.node.nodePortMin = static_cast<uint16_t>(lo);
      opts.node.nodePortMax = static_cast<uint16_t>(hi);
    } else if (takeValue(a, "zone", nullptr, &value, &error)) {
      opts.node.zone = value;
    } else if (takeValue(a, "scheduler", nullptr, &value, &error)) {
      if (error.empty() && !isKnownScheduler(value)) return usageError("--scheduler: unknown scheduler \"" + value + "\"");
      opts.node.defaultScheduler = value;
    } else if (takeValue(a, "proxy-name", nullptr, &value, &error)) {
      opts.node.proxyName = value;
    } else if (takeValue(a, "vip-mode", nullptr, &value, &error)) {
      if (error.empty() && value == "route") {
        opts.vipMode = VipMode::kRoute;
      } else if (error.empty() && value == "address") {
        opts.vipMode = VipMode::kAddress;
      } else if (error.empty()) {
        return usageError("--vip-mode wants route or address");
      }
    } else if (takeValue(a, "table-read", nullptr, &value, &error)) {
      if (error.empty() && (value == "proc" || value == "netlink")) {
        destsFromProc = value == "proc";
      } else if (error.empty()) {
        return usageError("--table-read wants proc or netlink");
      }
    } else if (takeValue(a, "state-dir", nullptr, &value, &error)) {
      if (error.empty() && (value.empty() || value[0] != '/')) return usageError("--state-dir wants an absolute path");
      hostOptions.stateDir = value;
    } else if (takeValue(a, "dummy-interface", nullptr, &value, &error)) {
      if (error.empty() && (value.empty() || value.size() > 15)) return usageError("--dummy-interface: 1..15 characters");
      opts.dummyInterface = value;
    } else if (takeValue(a, "drain", nullptr, &value, &error)) {
      if (value == "wait") {
        opts.drain = DrainMode::kWait;
      } else if (value == "skip") {
        opts.drain = DrainMode::kSkip;
      } else if (error.empty()) {
        error = "--drain must be wait or skip";
      }
    } else if (takeValue(a, "lock-timeout", nullptr, &value, &error)) {
      uint64_t secs = 0;
      if (error.empty() && !parseUint(value, 86400, &secs)) error = "--lock-timeout wants seconds (0..86400)";
      lockTimeout = std::chrono::seconds(secs);
    } else if (takeValue(a, "drain-timeout", nullptr, &value, &error)) {
      uint64_t secs = 0;
      if (error.empty() && !parseUint(value, 86400, &secs)) error = "--drain-timeout wants seconds (0..86400)";
      opts.drainTimeout = std::chrono::seconds(secs);
    } else {
      return usageError("reconcile: unknown argument " + arg);
    }
    if (!error.empty()) return usageError(error);
  }
  if (files.empty()) return usageError("reconcile: give at least one -f FILE");
  for (const auto& ip : nodeIps) {
    auto addr = ipvs::Address::parse(ip);
    if (!addr.isOk()) return usageError("--node-ip: " + addr.status().message());
    opts.node.nodeIps.push_back(*addr);
  }
  opts.nodeIpsFromHost = nodeIps.empty();

  // Exit 2 before reconcile() starts: the reason on stderr, and with -o json
  // the one object on stdout that a caller parses either way.
  auto fatal = [&](const Status& s, const char* more) {
    std::cerr << "kipvs: " << s.toString() << more << "\n";
    if (opts.output == OutputFormat::kJson) renderFatalJson(s, opts.dryRun, std::cout);
    return 2;
  };

  // The kernel side starts first, on a thread of its own, while this one
  // parses the input: the lock (one writer per table: it comes before the
  // table read the plan is made from, may wait for another kipvs, and goes
  // when the process exits; see netns_lock.h), IPVS's sockets, then the read
  // of the live table. Those are kernel time and waiting, the parse is user
  // time, and a node has more than one CPU (VM, 10,000 Services: the lock and
  // the sockets alone held the parse back ~20 ms). Nothing is written before
  // the whole input has parsed: a bad file changes nothing.
  // Reconcile compares specs and connection counts only (no traffic counters),
  // and reads and decodes on one thread: the parse beside it needs the CPUs
  // (VM, no-op at 10,000 Services: 2.8-3.9 s inline against 3.1-5.3 s with a
  // decode thread; 1.9-3.1 s against 2.2-2.6 s with a second read socket).
  Status lockError;
  std::optional<NetnsLock> lock;
  StatusOr<std::unique_ptr<ipvs::NetlinkIpvsClient>> client = Status::error(Code::kIo, "not opened");
  auto lockAndOpen = [&] {
    if (!opts.dryRun) {
      auto l = NetnsLock::acquire(kIpvsLockName, lockTimeout, std::chrono::milliseconds(100), sleepFor);
      if (!l.isOk()) {
        lockError = l.status();
        return false;
      }
      lock.emplace(std::move(*l));
    }
    client = openKernel(/*readStats=*/false, /*parallelRead=*/false, destsFromProc);
    return client.isOk();
  };
  std::promise<void> openedPromise;  // lockError, lock and client are set
  std::future<void> opened = openedPromise.get_future();
  std::promise<StatusOr<ipvs::Table>> readPromise;  // set only when the client opened
  std::future<StatusOr<ipvs::Table>> dump = readPromise.get_future();
  std::thread kernelSide;
  VLOG(1) << "reading the live table, parsing the input";
  try {
    kernelSide = std::thread([&] {
      const bool open = lockAndOpen();
      openedPromise.set_value();
      if (open) readPromise.set_value((*client)->dumpTable());
    });
  } catch (const std::system_error&) {
    // No thread to be had (pids.max, RLIMIT_NPROC): the lock and the sockets
    // after the parse (below), and reconcile reads the table itself.
  }
  auto joinKernelSide = [&] {
    if (kernelSide.joinable()) kernelSide.join();
  };
  struct sigaction bus = {}, defaultBus = {};
  bus.sa_handler = opts.output != OutputFormat::kJson ? onSigbus : opts.dryRun ? onSigbusJsonDryRun : onSigbusJson;
  ::sigaction(SIGBUS, &bus, &defaultBus);
  // The input stays mapped until the plan is out and only the kernel writes
  // are left to wait for (reconcile's whileWriting, below).
  std::vector<std::shared_ptr<const void>> mapped;
  ParseOptions parseOptions;
  parseOptions.keepMapped = &mapped;
  auto cluster = parseFiles(files, parseOptions);
  ::sigaction(SIGBUS, &defaultBus, nullptr);
  VLOG(1) << "parsed " << files.size() << " file(s)";
  // A bad file is said at once, not after a wait for the lock; the process
  // ends with the kernel side wherever it is (nothing written).
  if (!cluster.isOk()) exitNow(fatal(cluster.status(), "\nnothing was changed"));
  if (!kernelSide.joinable()) {
    lockAndOpen();
    openedPromise.set_value();
  }
  opened.wait();
  if (!lockError.isOk()) {
    joinKernelSide();
    return fatal(lockError, "\nnothing was changed");
  }
  if (lock && !lock->warning().empty()) std::cerr << "kipvs: warning: " << lock->warning() << "\n";
  if (!client.isOk()) {
    joinKernelSide();
    // Without IPVS there is no plan, but the input can still be checked: its
    // objects' errors are named (e.g. on a workstation, before a rollout).
    NodeFacts node = opts.node;
    if (opts.nodeIpsFromHost) {
      if (auto host = NetlinkHostNetwork::open(hostOptions); host.isOk()) {
        if (auto ips = (*host)->nodeAddresses(opts.dummyInterface); ips.isOk()) node.nodeIps = *ips;
      }
    }
    const Desired d = computeDesired(*cluster, node);
    for (const auto& e : d.errors) std::cerr << "error: " << e.toString() << "\n";
    if (!d.errors.empty()) std::cerr << d.errors.size() << " objects with errors (checked without a kernel)\n";
    return fatal(client.status(), "");
  }
  ipvs::NetlinkIpvsClient& kernel = **client;
  auto hostNet = NetlinkHostNetwork::open(hostOptions);
  if (!hostNet.isOk()) exitNow(fatal(hostNet.status(), ""));  // the read may still be going
  // The desired state is computed while the dump may still be running.
  // The read's outcome is told here, on this thread: std::cerr is not the
  // reader thread's to write while this one may.
  auto readDone = [&kernel] {
    const auto& read = kernel.lastRead();
    if (!read.procError.isOk()) {
      std::cerr << "kipvs: warning: " << read.procError.toString()
                << "; reading every virtual server's real servers over netlink\n";
    }
    VLOG(1) << "live table read: the real servers of " << read.servicesFromProc << " virtual servers from "
            << "/proc/net/ip_vs, of " << read.servicesOverNetlink << " over netlink (" << read.procReads
            << " reads of the listing)";
  };
  TableSource firstRead;
  TableReady firstReadReady;
  if (kernelSide.joinable()) {
    firstRead = [&dump, &kernel, &readDone, &joinKernelSide] {
      // Rather than wait for the read, take a share of its dests dumps.
      const size_t helped = kernel.helpRead();
      VLOG(1) << "read the real servers of " << helped << " services beside the table reader";
      StatusOr<ipvs::Table> t = dump.get();
      joinKernelSide();
      readDone();
      return t;
    };
    firstReadReady = [&dump] { return dump.wait_for(std::chrono::seconds(0)) == std::future_status::ready; };
  } else {
    firstRead = [&kernel, &readDone] {
      StatusOr<ipvs::Table> t = kernel.dumpTable();
      readDone();
      return t;
    };
  }
  ReconcileResult r = reconcile(*cluster, opts, kernel, **hostNet, std::cout, std::cerr, sleepFor, firstRead,
                                firstReadReady, [&mapped] { mapped.clear(); });
  VLOG(1) << "done; kernel writes: " << (*client)->writeCount();
  exitNow(r.exitCode());
}

}  // namespace

int main(int argc, char** argv) {
  kipvs::growHeapInLargeSteps();
  std::ios::sync_with_stdio(false);
  Args a;
  int verbosity = 0;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-v" && i + 1 < argc) {
      uint64_t v = 0;
      if (!parseUint(argv[i + 1], 9, &v)) return usageError("-v wants a level 0..9");
      verbosity = static_cast<int>(v);
      ++i;
    } else if (s.rfind("-v=", 0) == 0 || (s.size() == 3 && s.rfind("-v", 0) == 0 && std::isdigit(s[2]))) {
      uint64_t v = 0;
      if (!parseUint(s.substr(s[2] == '=' ? 3 : 2), 9, &v)) return usageError("-v wants a level 0..9");
      verbosity = static_cast<int>(v);
    } else {
      a.v.push_back(s);
    }
  }
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_v = verbosity;
  FLAGS_minloglevel = verbosity > 0 ? 0 : 1;  // warnings and up unless asked

  if (a.done()) {
    std::cerr << kUsage;
    return 2;
  }
  if (a.peek() == "help" || a.peek() == "--help" || a.peek() == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::string cmd = a.peek();
  ++a.i;
  if (cmd == "version" || cmd == "--version") {
    if (!a.done()) return usageError("version: unknown argument " + a.peek());
    return cmdVersion();
  }
  if (cmd == "dump") return cmdDump(a);
  if (cmd == "reconcile") return cmdReconcile(a);
  return usageError("unknown command \"" + cmd + "\"");
}
