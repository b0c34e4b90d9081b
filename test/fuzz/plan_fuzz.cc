// Property fuzzer for the planner and apply (controller/plan.h, controller/apply.h),
// libFuzzer. Each input builds, from small address/port pools so that keys collide:
//   actual   loaded into a FakeIpvsClient with the kernel's own ops (owned and
//            foreign services, IPv4/IPv6, TCP/UDP/SCTP, fwmark, schedulers, flags,
//            persistence, netmask, pe, dests with every forwarding method,
//            thresholds, tunnels, connection counters), then dumped;
//   desired  as computeDesired() + reconcile's validation would hand it over:
//            normalized, valid, no fwmark, every key owned (reconcile adds the
//            desired VIPs to the ownership; NodePorts inside the range);
//   own      a random subset of the VIP pool, the desired VIPs, the node IPs,
//            a NodePort range.
// Then plan(desired, actual, own) is applied to the fake (through a client that
// records every write) and these must hold:
//   P1 apply reports no failure;
//   P2 every desired service in the fake equals desired, except departing
//      TCP/fwmark dests with connections, kept at weight 0 (their other fields
//      as they were); undesired owned services are gone;
//   P3 foreign services (not owned, not desired) are identical before/after
//      (spec, dests, counters, stats) and get no write at all;
//   P4 re-planning against the new table gives zero ops (the same drains) and
//      applying it makes zero writes;
//   P5 no delete + add of one key (service or dest) in a plan; every op is needed
//      (minimal: no add of what exists, no update of what is equal, ...);
//   P6 order: per service the service op first, then dest adds, updates,
//      deletes; creations/updates sorted by key before deletions; in the writes
//      sent, a service's add before any of its dest ops, every delete-service
//      after every other write;
//   P7 planKeys(all keys) == plan(); planKeys(subset) == plan() restricted to it;
//      planFilling(desired without dests, fill) == plan(), placed() in plan order;
//      applyStreamed(serviceOps, chunks from placed, plan) sends exactly the
//      writes apply(plan) sends and leaves the same table.
//
// Build/run: test/fuzz/build_plan.sh. Env:
//   KIPVS_FUZZ_VERBOSE=1  print the tables and plans of each input
//   KIPVS_FUZZ_RAW=1      also load actual entries that kipvs and ipvsadm never write
//                         (route/tunnel dests on another port than the service's,
//                         IPv4 netmask 0) on owned services

#include <fuzzer/FuzzedDataProvider.h>
#include <glog/logging.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "controller/apply.h"
#include "controller/plan.h"
#include "ipvs/fake_client.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using namespace kipvs::controller;

namespace {

bool gVerbose = false;
bool gRaw = false;

[[noreturn]] void fail(const std::string& what, const std::string& detail) {
  std::fprintf(stderr, "\n==== PROPERTY VIOLATED: %s\n%s\n", what.c_str(), detail.c_str());
  std::fflush(stderr);
  std::abort();
}

Address A(const char* s) { return *Address::parse(s); }

// --- printing -------------------------------------------------------------

std::string specStr(const ServiceSpec& s) {
  std::ostringstream o;
  o << "sched=" << s.scheduler << " flags=0x" << std::hex << s.flags << std::dec << " timeout=" << s.timeout
    << " netmask=0x" << std::hex << s.netmask << std::dec << " pe=" << (s.pe.empty() ? "-" : s.pe);
  return o.str();
}

std::string destStr(const DestSpec& d) {
  std::ostringstream o;
  o << fwdMethodName(d.fwd) << " w=" << d.weight << " thr=" << d.lowerThreshold << ".." << d.upperThreshold;
  if (d.fwd == FwdMethod::kTunnel || d.tunType != TunnelType::kIpip || d.tunPort || d.tunFlags) {
    o << " tun=" << int(d.tunType) << "/" << d.tunPort << "/" << d.tunFlags;
  }
  return o.str();
}

std::string tableStr(const Table& t) {
  std::ostringstream o;
  for (const auto& [k, s] : t.services) {
    o << "  " << k.toString() << " " << specStr(s.spec) << "\n";
    for (const auto& [dk, ds] : s.dests) {
      o << "    -> " << dk.toString() << " " << destStr(ds.spec) << " conns=" << ds.counters.activeConns << "/"
        << ds.counters.inactiveConns << "\n";
    }
  }
  return o.str();
}

std::string opStr(const Op& op) {
  std::string s = op.toString();
  if (op.kind == Op::Kind::kAddService || op.kind == Op::Kind::kUpdateService) s += " [" + specStr(op.serviceSpec) + "]";
  if (op.kind == Op::Kind::kAddDest || op.kind == Op::Kind::kUpdateDest) s += " [" + destStr(op.destSpec) + "]";
  return s;
}

std::string planStr(const Plan& p) {
  std::ostringstream o;
  for (const auto& sp : p.services) {
    o << "  [" << sp.key.toString() << " action=" << int(sp.action) << "]\n";
    for (const auto& op : sp.ops) o << "    " << opStr(op) << "\n";
    for (const auto& d : sp.draining) o << "    draining " << d.dest.toString() << "\n";
  }
  for (const auto& k : p.leftAlone) o << "  left alone " << k.toString() << "\n";
  return o.str();
}

// --- equality -------------------------------------------------------------

bool opEq(const Op& a, const Op& b) {
  return a.kind == b.kind && a.service == b.service && a.serviceSpec == b.serviceSpec && a.dest == b.dest &&
         a.destSpec == b.destSpec;
}

bool spEq(const ServicePlan& a, const ServicePlan& b) {
  if (!(a.key == b.key) || a.action != b.action || a.ops.size() != b.ops.size() ||
      a.draining.size() != b.draining.size())
    return false;
  for (size_t i = 0; i < a.ops.size(); ++i)
    if (!opEq(a.ops[i], b.ops[i])) return false;
  for (size_t i = 0; i < a.draining.size(); ++i) {
    if (!(a.draining[i].dest == b.draining[i].dest) || a.draining[i].activeConns != b.draining[i].activeConns ||
        a.draining[i].inactiveConns != b.draining[i].inactiveConns)
      return false;
  }
  return true;
}

bool planEq(const Plan& a, const Plan& b) {
  if (a.services.size() != b.services.size() || a.leftAlone != b.leftAlone) return false;
  for (size_t i = 0; i < a.services.size(); ++i)
    if (!spEq(a.services[i], b.services[i])) return false;
  return true;
}

bool stateEq(const ServiceState& a, const ServiceState& b) {
  if (!(a.spec == b.spec) || !(a.stats == b.stats) || a.dests.size() != b.dests.size()) return false;
  for (auto x = a.dests.begin(), y = b.dests.begin(); x != a.dests.end(); ++x, ++y) {
    if (!(x->first == y->first) || !(x->second.spec == y->second.spec) || !(x->second.counters == y->second.counters))
      return false;
  }
  return true;
}

bool tableEq(const Table& a, const Table& b) {
  if (a.services.size() != b.services.size()) return false;
  for (auto x = a.services.begin(), y = b.services.begin(); x != a.services.end(); ++x, ++y) {
    if (!(x->first == y->first) || !stateEq(x->second, y->second)) return false;
  }
  return true;
}

// --- a client that records the writes --------------------------------------

class RecordingClient : public IpvsClient {
 public:
  explicit RecordingClient(FakeIpvsClient& f) : f_(f) {}
  StatusOr<Table> dumpTable() override { return f_.dumpTable(); }
  StatusOr<std::optional<ServiceState>> dumpService(const ServiceKey& k) override { return f_.dumpService(k); }
  std::vector<Status> apply(std::span<const Op> ops) override {
    sent.insert(sent.end(), ops.begin(), ops.end());
    return f_.apply(ops);
  }
  StatusOr<Timeouts> getTimeouts() override { return f_.getTimeouts(); }
  Status setTimeouts(const Timeouts& t) override { return f_.setTimeouts(t); }
  Status zero(const std::optional<ServiceKey>& k) override { return f_.zero(k); }
  Status flush() override { return f_.flush(); }
  StatusOr<Info> info() override { return f_.info(); }
  uint64_t writeCount() const override { return f_.writeCount(); }
  std::vector<Op> sent;

 private:
  FakeIpvsClient& f_;
};

// --- generation -------------------------------------------------------------

const char* const kVipPool[] = {"10.96.0.1", "10.96.0.2", "10.96.0.3", "fd00::1", "fd00::2"};
const char* const kNodePool[] = {"192.168.1.10", "fd00:1::10"};
const char* const kForeignPool[] = {"172.16.0.1", "172.16.0.2", "fd00:2::1"};
const uint16_t kSvcPorts[] = {80, 443, 53, 30080, 32767, 32768, 29999, 22};
const char* const kDest4[] = {"10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5"};
const char* const kDest6[] = {"fd00:a::1", "fd00:a::2", "fd00:a::3"};
const uint16_t kDestPorts[] = {8080, 80, 443, 53, 0};
const char* const kScheds[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"};

template <typename T, size_t N>
const T& pick(FuzzedDataProvider& fdp, const T (&arr)[N]) {
  return arr[fdp.ConsumeIntegralInRange<size_t>(0, N - 1)];
}

Address pickServiceAddr(FuzzedDataProvider& fdp) {
  switch (fdp.ConsumeIntegralInRange(0, 2)) {
    case 0:
      return A(pick(fdp, kVipPool));
    case 1:
      return A(pick(fdp, kNodePool));
    default:
      return A(pick(fdp, kForeignPool));
  }
}

ServiceSpec genServiceSpec(FuzzedDataProvider& fdp, Family fam, bool forActual) {
  ServiceSpec s;
  s.scheduler = pick(fdp, kScheds);
  if (forActual && fdp.ConsumeIntegralInRange(0, 15) == 0) s.scheduler = "none";
  uint32_t f = fdp.ConsumeIntegral<uint8_t>();
  s.flags = f & (kSvcFlagPersistent | kSvcFlagOnePacket | kSvcFlagSched1 | kSvcFlagSched2 | kSvcFlagSched3);
  if (forActual && (f & 0x80)) s.flags |= kSvcFlagHashed;  // an add with HASHED: the kernel ignores it
  static const uint32_t kTimeouts[] = {0, 60, 10800, 86400};
  s.timeout = pick(fdp, kTimeouts);
  if (fam == Family::kV4) {
    static const uint32_t kMasks[] = {0xffffffffu, 0xffffff00u, 0xffff0000u, 0};
    s.netmask = pick(fdp, kMasks);
    if (s.netmask == 0 && !(forActual && gRaw)) s.netmask = 0xffffffffu;
  } else {
    static const uint32_t kPlen[] = {128, 64, 48, 0};
    s.netmask = pick(fdp, kPlen);
    if (s.netmask == 0) s.netmask = 128;  // the kernel refuses 0 for IPv6 (EINVAL)
  }
  if (fdp.ConsumeIntegralInRange(0, 7) == 0) s.pe = "sip";
  return s;
}

DestKey genDestKey(FuzzedDataProvider& fdp, Family fam) {
  DestKey k;
  // Now and then a dest of the other family (needs tunnelling).
  bool other = fdp.ConsumeIntegralInRange(0, 7) == 0;
  Family df = other ? (fam == Family::kV4 ? Family::kV6 : Family::kV4) : fam;
  k.address = df == Family::kV4 ? A(pick(fdp, kDest4)) : A(pick(fdp, kDest6));
  k.port = pick(fdp, kDestPorts);
  return k;
}

DestSpec genDestSpec(FuzzedDataProvider& fdp, bool mixed) {
  DestSpec d;
  uint8_t m = fdp.ConsumeIntegralInRange(0, 7);
  d.fwd = mixed ? FwdMethod::kTunnel
          : m < 4 ? FwdMethod::kMasq
          : m == 4 ? FwdMethod::kLocal
          : m == 5 ? FwdMethod::kRoute
                   : FwdMethod::kTunnel;
  d.weight = fdp.ConsumeIntegralInRange(0, 4);
  if (fdp.ConsumeIntegralInRange(0, 5) == 0) {
    d.lowerThreshold = fdp.ConsumeIntegralInRange(0, 3);
    d.upperThreshold = d.lowerThreshold + fdp.ConsumeIntegralInRange(0, 3);
  }
  if (d.fwd == FwdMethod::kTunnel) {
    d.tunType = static_cast<TunnelType>(fdp.ConsumeIntegralInRange(0, 2));
    d.tunPort = d.tunType == TunnelType::kGue ? (fdp.ConsumeBool() ? 6080 : 5555) : 0;
    d.tunFlags = fdp.ConsumeIntegralInRange(0, 3);
    if (d.tunType == TunnelType::kIpip) d.tunFlags = 0;
  }
  return d;
}

struct Input {
  std::vector<Op> load;                                 // ops that build actual
  std::vector<std::tuple<ServiceKey, DestKey, DestCounters>> counters;
  Table desired;
  Ownership own;
  std::vector<ServiceKey> subset;  // for planKeys
  // Fault injection: the first write naming the fault'th planned service fails with faultErrno.
  int fault = -1;
  int faultErrno = 0;
};

Input generate(FuzzedDataProvider& fdp) {
  Input in;
  // Ownership.
  for (const char* v : kVipPool)
    if (fdp.ConsumeBool()) in.own.vips.insert(A(v));
  for (const char* n : kNodePool) in.own.nodeIps.insert(A(n));
  if (fdp.ConsumeIntegralInRange(0, 3) == 0) {
    in.own.nodePortMin = 30080;
    in.own.nodePortMax = 32767;
  }

  // Actual.
  const int nActual = fdp.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < nActual; ++i) {
    ServiceKey key;
    if (fdp.ConsumeIntegralInRange(0, 7) == 0) {
      key = ServiceKey::mark(fdp.ConsumeBool() ? Family::kV4 : Family::kV6, fdp.ConsumeIntegralInRange(1, 2));
    } else {
      static const Protocol kProtos[] = {Protocol::kTcp, Protocol::kTcp, Protocol::kUdp, Protocol::kSctp};
      key = ServiceKey::make(pick(fdp, kProtos), pickServiceAddr(fdp), pick(fdp, kSvcPorts));
    }
    ServiceSpec spec = genServiceSpec(fdp, key.family, true);
    in.load.push_back(Op::addService(key, spec));
    const int nd = fdp.ConsumeIntegralInRange(0, 4);
    for (int j = 0; j < nd; ++j) {
      DestKey dk = genDestKey(fdp, key.family);
      DestSpec ds = genDestSpec(fdp, dk.address.family != key.family);
      // What ipvsadm (and kipvs, which sends normalized dests) writes: a
      // route/tunnel dest of a non-fwmark service on the service's port.
      bool raw = gRaw && fdp.ConsumeBool();
      if (!raw && !key.isFwmark() && (ds.fwd == FwdMethod::kRoute || ds.fwd == FwdMethod::kTunnel)) dk.port = key.port;
      in.load.push_back(Op::addDest(key, dk, ds));
      DestCounters c;
      if (fdp.ConsumeBool()) {
        c.activeConns = fdp.ConsumeIntegralInRange(0, 3);
        c.inactiveConns = fdp.ConsumeIntegralInRange(0, 3);
      }
      in.counters.emplace_back(key, dk, c);
    }
  }

  // Desired.
  const int nDesired = fdp.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < nDesired; ++i) {
    static const Protocol kProtos[] = {Protocol::kTcp, Protocol::kTcp, Protocol::kUdp, Protocol::kSctp};
    if (fdp.ConsumeIntegralInRange(0, 15) == 0) {
      // kipvs makes none (yet), but plan() takes any desired service: a fwmark one
      // is planned like the rest (and, never owned, left alone once undesired).
      ServiceKey key = ServiceKey::mark(fdp.ConsumeBool() ? Family::kV4 : Family::kV6, fdp.ConsumeIntegralInRange(1, 2));
      ServiceState st;
      st.spec = genServiceSpec(fdp, key.family, false);
      const int nd = fdp.ConsumeIntegralInRange(0, 3);
      for (int j = 0; j < nd; ++j) {
        DestKey dk = genDestKey(fdp, key.family);
        st.dests[dk].spec = genDestSpec(fdp, dk.address.family != key.family);
      }
      in.desired.services[key] = std::move(st);
      continue;
    }
    bool nodePort = fdp.ConsumeIntegralInRange(0, 3) == 0;
    Address addr = nodePort ? A(pick(fdp, kNodePool)) : A(pick(fdp, kVipPool));
    uint16_t port;
    if (nodePort) {
      static const uint16_t kNp[] = {30080, 32767, 31000};
      port = pick(fdp, kNp);
      if (port < in.own.nodePortMin || port > in.own.nodePortMax) port = in.own.nodePortMin;
    } else {
      port = pick(fdp, kSvcPorts);
      in.own.vips.insert(addr);  // reconcile: the desired VIPs are owned (bound, or about to be)
    }
    ServiceKey key = ServiceKey::make(pick(fdp, kProtos), addr, port);
    ServiceState st;
    st.spec = genServiceSpec(fdp, key.family, false);
    const int nd = fdp.ConsumeIntegralInRange(0, 4);
    for (int j = 0; j < nd; ++j) {
      DestKey dk = genDestKey(fdp, key.family);
      DestState ds;
      ds.spec = genDestSpec(fdp, dk.address.family != key.family);
      st.dests[dk] = ds;
    }
    in.desired.services[key] = std::move(st);
  }
  normalize(in.desired);
  // reconcile's dropInvalidServices / dropInvalidDests.
  for (auto it = in.desired.services.begin(); it != in.desired.services.end();) {
    if (!validateService(it->first, it->second.spec).isOk()) {
      it = in.desired.services.erase(it);
      continue;
    }
    for (auto d = it->second.dests.begin(); d != it->second.dests.end();) {
      d = validateDest(it->first, d->first, d->second.spec).isOk() ? std::next(d) : it->second.dests.erase(d);
    }
    ++it;
  }

  // A subset of keys for planKeys (some absent from both tables).
  const int nSub = fdp.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < nSub; ++i) {
    static const Protocol kProtos[] = {Protocol::kTcp, Protocol::kUdp};
    in.subset.push_back(ServiceKey::make(pick(fdp, kProtos), pickServiceAddr(fdp), pick(fdp, kSvcPorts)));
  }
  if (fdp.ConsumeIntegralInRange(0, 3) == 0) {
    // Errnos that do not lie about the table: refused (permanent) or lost (transient).
    static const int kErrnos[] = {EINVAL, EPERM, ENOMEM, ENOBUFS, EAGAIN, EINTR};
    in.fault = fdp.ConsumeIntegralInRange(0, 7);
    in.faultErrno = pick(fdp, kErrnos);
  }
  return in;
}

// Loads actual into a fake; what the kernel refuses is simply not there.
void load(FakeIpvsClient& fake, const Input& in) {
  fake.apply(in.load);
  for (const auto& [k, d, c] : in.counters) (void)fake.setCounters(k, d, c);
}

Table dump(FakeIpvsClient& fake) {
  auto t = fake.dumpTable();
  if (!t.isOk()) fail("dump", t.status().toString());
  return *t;
}

// --- checks -----------------------------------------------------------------

void checkPlanShape(const Plan& p, const Table& desired, const Table& actual, const Ownership& own,
                    const std::string& ctx) {
  bool seenDelete = false;
  const ServiceKey* prevKey = nullptr;
  std::set<ServiceKey> keys;
  for (const auto& sp : p.services) {
    const bool isDel = sp.action == ServicePlan::Action::kDelete;
    if (seenDelete && !isDel) fail("P6 creation/update after a deletion", ctx);
    if (isDel && !seenDelete) {
      seenDelete = true;
      prevKey = nullptr;
    }
    if (prevKey && !(*prevKey < sp.key)) fail("P6 services not sorted by key within their group", ctx);
    prevKey = &sp.key;
    if (!keys.insert(sp.key).second) fail("P6 one key planned twice", ctx);
    if (sp.ops.empty() && sp.draining.empty()) fail("plan holds a service with nothing to do", ctx);

    auto a = actual.services.find(sp.key);
    auto d = desired.services.find(sp.key);
    const ServiceState* have = a == actual.services.end() ? nullptr : &a->second;
    const ServiceState* want = d == desired.services.end() ? nullptr : &d->second;
    if (!want && !own.owns(sp.key)) fail("P3 a foreign service is planned", ctx + "key " + sp.key.toString());

    // Op kinds in order: service op, then add-dest*, update-dest*, delete-dest*.
    int phase = 0;
    std::set<DestKey> added, deleted, updated;
    for (size_t i = 0; i < sp.ops.size(); ++i) {
      const Op& op = sp.ops[i];
      if (!(op.service == sp.key)) fail("op names another service than its group", ctx);
      int ph = 0;
      switch (op.kind) {
        case Op::Kind::kAddService:
        case Op::Kind::kUpdateService:
        case Op::Kind::kDeleteService:
          if (i != 0) fail("P6 service op not first in its group", ctx);
          ph = 0;
          break;
        case Op::Kind::kAddDest: ph = 1; break;
        case Op::Kind::kUpdateDest: ph = 2; break;
        case Op::Kind::kDeleteDest: ph = 3; break;
      }
      if (ph < phase) fail("P6 dest ops out of order (adds, updates, deletes)", ctx + "at " + opStr(op));
      phase = ph;
      // Minimality: every op is needed.
      switch (op.kind) {
        case Op::Kind::kAddService:
          if (have || !want || sp.action != ServicePlan::Action::kCreate) fail("P5 add-service not needed", ctx);
          if (!(op.serviceSpec == want->spec)) fail("add-service with another spec than desired", ctx);
          break;
        case Op::Kind::kUpdateService:
          if (!have || !want || have->spec == want->spec || sp.action != ServicePlan::Action::kUpdate)
            fail("P5 update-service not needed", ctx);
          if (!(op.serviceSpec == want->spec)) fail("update-service with another spec than desired", ctx);
          break;
        case Op::Kind::kDeleteService:
          if (!have || want || !own.owns(sp.key) || !isDel || sp.ops.size() != 1)
            fail("P5 delete-service not needed / not alone", ctx);
          break;
        case Op::Kind::kAddDest: {
          if (!want || !want->dests.count(op.dest)) fail("P5 add-dest of an undesired dest", ctx + opStr(op));
          if (have && have->dests.count(op.dest)) fail("P5 add-dest of an existing dest (not a SET)", ctx + opStr(op));
          if (!(op.destSpec == want->dests.at(op.dest).spec)) fail("add-dest spec differs from desired", ctx);
          added.insert(op.dest);
          break;
        }
        case Op::Kind::kUpdateDest: {
          if (!have || !have->dests.count(op.dest)) fail("P5 update-dest of a missing dest", ctx + opStr(op));
          const DestState& h = have->dests.at(op.dest);
          if (want && want->dests.count(op.dest)) {
            if (h.spec == want->dests.at(op.dest).spec) fail("P5 update-dest of an equal dest", ctx + opStr(op));
            if (!(op.destSpec == want->dests.at(op.dest).spec)) fail("update-dest spec differs from desired", ctx);
          } else {
            // A quiesce: same spec at weight 0, only for a busy graceful dest not at 0 already.
            DestSpec q = h.spec;
            q.weight = 0;
            if (!(op.destSpec == q) || h.spec.weight == 0 || !drainsGracefully(sp.key) ||
                h.counters.activeConns + h.counters.inactiveConns == 0)
              fail("P5 bad quiesce", ctx + opStr(op));
          }
          if (!updated.insert(op.dest).second) fail("dest updated twice", ctx);
          break;
        }
        case Op::Kind::kDeleteDest: {
          if (!have || !have->dests.count(op.dest)) fail("P5 delete-dest of a missing dest", ctx + opStr(op));
          if (want && want->dests.count(op.dest)) fail("P5 delete-dest of a desired dest (delete+add?)", ctx + opStr(op));
          const DestState& h = have->dests.at(op.dest);
          if (drainsGracefully(sp.key) && h.counters.activeConns + h.counters.inactiveConns > 0)
            fail("drain: busy TCP dest deleted at once", ctx + opStr(op));
          deleted.insert(op.dest);
          break;
        }
      }
    }
    for (const auto& dk : added)
      if (deleted.count(dk)) fail("P5 delete+add of one dest", ctx);
  }
  // Completeness: every desired service that differs has a group, every owned stale one a delete.
  for (const auto& [k, want] : desired.services) {
    auto a = actual.services.find(k);
    bool differs = a == actual.services.end() || !(a->second.spec == want.spec);
    if (!differs) {
      for (const auto& [dk, ds] : want.dests) {
        auto h = a->second.dests.find(dk);
        if (h == a->second.dests.end() || !(h->second.spec == ds.spec)) differs = true;
      }
      for (const auto& [dk, hs] : a->second.dests)
        if (!want.dests.count(dk)) differs = true;  // to delete, quiesce or drain
    }
    if (differs && !keys.count(k)) fail("plan misses a service that differs", ctx + k.toString());
  }
  std::vector<ServiceKey> foreign;
  for (const auto& [k, s] : actual.services) {
    if (desired.services.count(k)) continue;
    if (own.owns(k)) {
      if (!keys.count(k)) fail("plan misses a stale owned service", ctx + k.toString());
    } else {
      foreign.push_back(k);
    }
  }
  if (foreign != p.leftAlone) fail("leftAlone is not the foreign services in key order", ctx);
}

void checkSent(const std::vector<Op>& sent, const Table& before, const Table& desired, const Ownership& own,
               const std::string& ctx) {
  std::set<ServiceKey> addedSvc;
  std::map<ServiceKey, size_t> firstDestOp;
  std::map<std::pair<ServiceKey, DestKey>, size_t> destAdd, destDel;
  size_t lastNonDelete = 0, firstSvcDelete = SIZE_MAX;
  for (size_t i = 0; i < sent.size(); ++i) {
    const Op& op = sent[i];
    if (!desired.services.count(op.service) && !own.owns(op.service))
      fail("P3 a write touches a foreign service", ctx + opStr(op));
    switch (op.kind) {
      case Op::Kind::kAddService:
        if (firstDestOp.count(op.service)) fail("P6 dest op sent before its service's add", ctx + opStr(op));
        addedSvc.insert(op.service);
        lastNonDelete = i;
        break;
      case Op::Kind::kUpdateService:
        lastNonDelete = i;
        break;
      case Op::Kind::kDeleteService:
        firstSvcDelete = std::min(firstSvcDelete, i);
        break;
      default:
        firstDestOp.emplace(op.service, i);
        if (!before.services.count(op.service) && !addedSvc.count(op.service))
          fail("P6 dest op for a service not yet added", ctx + opStr(op));
        if (op.kind == Op::Kind::kAddDest) destAdd[{op.service, op.dest}] = i;
        if (op.kind == Op::Kind::kDeleteDest) destDel[{op.service, op.dest}] = i;
        lastNonDelete = i;
        break;
    }
  }
  if (firstSvcDelete != SIZE_MAX && firstSvcDelete < lastNonDelete)
    fail("P6 a service delete is sent before other writes", ctx);
  // New dests before old ones go, per service.
  std::map<ServiceKey, size_t> lastAdd, firstDel;
  for (const auto& [kd, i] : destAdd) lastAdd[kd.first] = std::max(lastAdd[kd.first], i);
  for (const auto& [kd, i] : destDel) {
    auto [it, ins] = firstDel.emplace(kd.first, i);
    if (!ins) it->second = std::min(it->second, i);
  }
  for (const auto& [k, i] : firstDel)
    if (lastAdd.count(k) && lastAdd[k] > i) fail("P6 a dest is deleted before a new one is added", ctx);
  for (const auto& [kd, i] : destAdd)
    if (destDel.count(kd)) fail("P5 delete+add of one dest sent", ctx);
}

void checkResult(const Table& before, const Table& after, const Table& desired, const Ownership& own,
                 const std::string& ctx) {
  for (const auto& [k, s] : after.services) {
    if (desired.services.count(k)) continue;
    auto b = before.services.find(k);
    if (b == before.services.end()) fail("P2 a service appeared that is not desired", ctx + k.toString());
    if (own.owns(k)) fail("P2 an undesired owned service survived", ctx + k.toString());
    if (!stateEq(b->second, s)) fail("P3 a foreign service changed", ctx + k.toString());
  }
  for (const auto& [k, s] : before.services) {
    if (!desired.services.count(k) && !own.owns(k) && !after.services.count(k))
      fail("P3 a foreign service vanished", ctx + k.toString());
  }
  for (const auto& [k, want] : desired.services) {
    auto a = after.services.find(k);
    if (a == after.services.end()) fail("P2 a desired service is missing", ctx + k.toString());
    const ServiceState& got = a->second;
    if (!(got.spec == want.spec)) fail("P2 service spec differs from desired", ctx + k.toString());
    for (const auto& [dk, ds] : want.dests) {
      auto d = got.dests.find(dk);
      if (d == got.dests.end()) fail("P2 a desired dest is missing", ctx + k.toString() + " -> " + dk.toString());
      if (!(d->second.spec == ds.spec)) fail("P2 a dest spec differs from desired", ctx + k.toString() + " -> " + dk.toString());
    }
    for (const auto& [dk, ds] : got.dests) {
      if (want.dests.count(dk)) continue;
      // Only a departing busy TCP/fwmark dest may stay, at weight 0, otherwise as it was.
      auto b = before.services.find(k);
      const DestState* old = nullptr;
      if (b != before.services.end()) {
        auto bd = b->second.dests.find(dk);
        if (bd != b->second.dests.end()) old = &bd->second;
      }
      if (!old) fail("P2 an undesired dest appeared", ctx + k.toString() + " -> " + dk.toString());
      DestSpec q = old->spec;
      q.weight = 0;
      if (!drainsGracefully(k) || old->counters.activeConns + old->counters.inactiveConns == 0 || !(ds.spec == q))
        fail("P2 an undesired dest stayed (not an intended drain)", ctx + k.toString() + " -> " + dk.toString());
    }
  }
}

void runOne(const Input& in) {
  FakeIpvsClient fake;
  load(fake, in);
  const Table actual = dump(fake);
  const Table& desired = in.desired;
  const Ownership& own = in.own;

  const Plan p = plan(desired, actual, own);
  std::string ctx = "actual:\n" + tableStr(actual) + "desired:\n" + tableStr(desired) + "plan:\n" + planStr(p);
  {
    std::string o = "own vips:";
    for (const auto& v : own.vips) o += " " + v.toString();
    o += " nodeports " + std::to_string(own.nodePortMin) + "-" + std::to_string(own.nodePortMax) + "\n";
    ctx = o + ctx;
  }
  if (gVerbose) std::fprintf(stderr, "%s\n", ctx.c_str());

  checkPlanShape(p, desired, actual, own, ctx);

  // P7: planKeys.
  {
    std::vector<ServiceKey> all;
    for (const auto& [k, s] : desired.services) all.push_back(k);
    for (const auto& [k, s] : actual.services) all.push_back(k);
    std::reverse(all.begin(), all.end());  // order and duplicates must not matter
    Plan pk = planKeys(desired, actual, own, all);
    if (!planEq(pk, p)) fail("P7 planKeys(all keys) != plan()", ctx + "planKeys:\n" + planStr(pk));

    std::vector<ServiceKey> sub = in.subset;
    for (size_t i = 0; i < all.size(); i += 2) sub.push_back(all[i]);
    std::set<ServiceKey> subSet(sub.begin(), sub.end());
    Plan ps = planKeys(desired, actual, own, sub);
    Plan want;
    for (const auto& sp : p.services)
      if (subSet.count(sp.key)) want.services.push_back(sp);
    for (const auto& k : p.leftAlone)
      if (subSet.count(k)) want.leftAlone.push_back(k);
    if (!planEq(ps, want)) fail("P7 planKeys(subset) != plan() restricted", ctx + "planKeys:\n" + planStr(ps));
  }

  // P7: planFilling, with placed() in plan order.
  std::vector<ServiceKey> placedKeys;
  std::vector<std::vector<Op>> chunks;
  {
    Table bare = desired;
    for (auto& [k, s] : bare.services) s.dests.clear();
    std::vector<ServiceKey> filled;
    Plan pf = planFilling(
        bare, actual, own,
        [&](const ServiceKey& k, ServiceState& st) {
          filled.push_back(k);
          st.dests = desired.services.at(k).dests;
        },
        [&](const ServicePlan& sp) {
          placedKeys.push_back(sp.key);
          std::vector<Op> chunk;
          for (const auto& op : sp.ops)
            if (!op.isServiceOp()) chunk.push_back(op);
          chunks.push_back(std::move(chunk));
        });
    if (!planEq(pf, p)) fail("P7 planFilling != plan()", ctx + "planFilling:\n" + planStr(pf));
    std::vector<ServiceKey> dk;
    for (const auto& [k, s] : desired.services) dk.push_back(k);
    if (filled != dk) fail("P7 fill not called once per desired service in key order", ctx);
    std::vector<ServiceKey> nonDel;
    for (const auto& sp : p.services)
      if (sp.action != ServicePlan::Action::kDelete) nonDel.push_back(sp.key);
    if (placedKeys != nonDel) fail("P7 placed() not called for each creation/update in plan order", ctx);
  }

  // Apply.
  RecordingClient rec(fake);
  const uint64_t w0 = fake.writeCount();
  ApplyReport r = apply(p, rec);
  if (!r.ok()) {
    std::string f;
    for (const auto& x : r.failures) f += "  " + opStr(x.op) + ": " + x.status.toString() + "\n";
    fail("P1 apply failed", ctx + "failures:\n" + f);
  }
  if (fake.writeCount() - w0 != rec.sent.size()) fail("write counter != ops sent", ctx);
  if (rec.sent.size() != p.opCount()) {
    std::string s;
    for (const auto& op : rec.sent) s += "  " + opStr(op) + "\n";
    fail("apply sent more or fewer writes than the plan holds (converge retries on a fresh view?)", ctx + "sent:\n" + s);
  }
  checkSent(rec.sent, actual, desired, own, ctx);
  const Table after = dump(fake);
  ctx += "after:\n" + tableStr(after);
  checkResult(actual, after, desired, own, ctx);

  // P4: idempotence.
  Plan again = plan(desired, after, own);
  if (!again.empty()) fail("P4 re-plan after apply is not empty", ctx + "replan:\n" + planStr(again));
  if (again.drainingCount() != p.drainingCount()) fail("P4 re-plan drains a different set", ctx + planStr(again));
  const uint64_t w1 = fake.writeCount();
  ApplyReport r2 = apply(again, fake);
  if (fake.writeCount() != w1 || r2.attempted != 0) fail("P4 a converged table got writes", ctx);

  // P7: applyStreamed with the chunks placed() gave == apply(plan).
  {
    FakeIpvsClient fake2;
    load(fake2, in);
    RecordingClient rec2(fake2);
    OpStream stream;
    for (auto& c : chunks) stream.push(std::move(c));
    stream.close();
    ApplyReport r3 = applyStreamed(serviceOps(desired, actual), stream, p, rec2);
    bool same = rec2.sent.size() == rec.sent.size();
    for (size_t i = 0; same && i < rec.sent.size(); ++i) same = opEq(rec.sent[i], rec2.sent[i]);
    if (!same) {
      std::string s;
      for (const auto& op : rec2.sent) s += "  " + opStr(op) + "\n";
      fail("P7 applyStreamed sent other writes than apply", ctx + "streamed sent:\n" + s);
    }
    if (!r3.ok() || !tableEq(dump(fake2), after)) fail("P7 applyStreamed left another table", ctx);
  }
}

}  // namespace

// One write refused or lost: a failure names only that service, every other
// service converges, foreign ones are untouched; then reconcile's retry
// (re-dump the failed services, planKeys, apply) and a full second run converge.
void runFault(const Input& in) {
  FakeIpvsClient fake;
  load(fake, in);
  const Table actual = dump(fake);
  const Plan p = plan(in.desired, actual, in.own);
  std::vector<ServiceKey> withOps;
  for (const auto& sp : p.services)
    if (!sp.ops.empty()) withOps.push_back(sp.key);
  if (in.fault < 0 || withOps.empty()) return;
  const ServiceKey victim = withOps[static_cast<size_t>(in.fault) % withOps.size()];
  fake.failNext(victim, in.faultErrno);
  std::string ctx = "fault " + std::to_string(in.faultErrno) + " on " + victim.toString() + "\nactual:\n" +
                    tableStr(actual) + "desired:\n" + tableStr(in.desired) + "plan:\n" + planStr(p);
  ApplyReport r = apply(p, fake);
  if (r.failures.size() != 1) fail("F one injected fault gives other than one failure", ctx);
  for (const auto& f : r.failures)
    if (!(f.op.service == victim)) fail("F a failure names another service", ctx);
  for (const auto& [k, n] : r.skippedDests)
    if (!(k == victim) || n == 0) fail("F dests of another service skipped", ctx);
  Table after = dump(fake);
  ctx += "after:\n" + tableStr(after);
  // Everything but the victim as without the fault.
  Table afterRest = after, actualRest = actual, desiredRest = in.desired;
  afterRest.services.erase(victim);
  actualRest.services.erase(victim);
  desiredRest.services.erase(victim);
  checkResult(actualRest, afterRest, desiredRest, in.own, ctx);
  // reconcile's retry: stale services and transient failures, re-dumped and planned again.
  std::set<ServiceKey> retryKeys = r.stale;
  for (const auto& f : r.failures)
    if (isTransient(f.status)) retryKeys.insert(f.op.service);
  Table view = actual;
  if (!retryKeys.empty()) {
    for (const auto& k : retryKeys) {
      auto one = fake.dumpService(k);
      if (!one.isOk()) fail("dumpService", ctx);
      if (one->has_value()) view.services[k] = **one; else view.services.erase(k);
    }
    std::vector<ServiceKey> keys(retryKeys.begin(), retryKeys.end());
    ApplyReport again = apply(planKeys(in.desired, view, in.own, keys), fake);
    if (!again.ok()) fail("F the retry of a transient failure failed", ctx + again.failures[0].status.toString());
    Table now = dump(fake);
    checkResult(actual, now, in.desired, in.own, ctx + "after retry:\n" + tableStr(now));
  }
  // The next run (a full re-plan) converges whatever the fault was.
  Table now = dump(fake);
  Plan next = plan(in.desired, now, in.own);
  ApplyReport r2 = apply(next, fake);
  if (!r2.ok()) fail("F the next run failed", ctx + planStr(next));
  Table fin = dump(fake);
  checkResult(actual, fin, in.desired, in.own, ctx + "after next run:\n" + tableStr(fin));
  if (!plan(in.desired, fin, in.own).empty()) fail("F not converged after the next run", ctx);
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 3;  // apply() warns on every refused op
  gVerbose = std::getenv("KIPVS_FUZZ_VERBOSE") != nullptr;
  const char* raw = std::getenv("KIPVS_FUZZ_RAW");
  gRaw = raw && *raw == '1';
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  Input in = generate(fdp);
  runOne(in);
  runFault(in);
  return 0;
}
