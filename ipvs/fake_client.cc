#include "ipvs/fake_client.h"

#include <climits>

namespace kipvs::ipvs {

namespace {

// Identity of a service as the kernel looks it up (ip_vs_genl_parse_service):
// fwmark services by (af, mark), the rest by (af, protocol, addr, port).
ServiceKey lookupKey(const ServiceKey& k) {
  ServiceKey key = k;
  ServiceSpec ignored;
  normalize(key, ignored);
  return key;
}

Status kernelError(int errnum, const Op& op) { return Status::kernel(errnum, op.toString()); }

}  // namespace

FakeIpvsClient::FakeIpvsClient()
    : schedulers_{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"} {}

StatusOr<Table> FakeIpvsClient::dumpTable() {
  if (dumpFault_) return Status::kernel(dumpFault_, "dump services");
  Table t = table_;
  normalizeRead(t);
  return t;
}

StatusOr<std::optional<ServiceState>> FakeIpvsClient::dumpService(const ServiceKey& k) {
  if (dumpFault_) return Status::kernel(dumpFault_, "dump service " + k.toString());
  auto it = table_.services.find(lookupKey(k));
  if (it == table_.services.end()) return std::optional<ServiceState>();
  Table one;
  one.services.emplace(it->first, it->second);
  normalizeRead(one);
  return std::optional<ServiceState>(one.services.begin()->second);
}

std::vector<Status> FakeIpvsClient::apply(std::span<const Op> ops) {
  std::vector<Status> out;
  out.reserve(ops.size());
  for (const Op& op : ops) {
    ++writes_;
    out.push_back(applyOne(op));
  }
  return out;
}

Status FakeIpvsClient::checkDest(const ServiceKey& svc, const DestKey& key, const DestSpec& spec) const {
  // Order follows ip_vs_genl_set_cmd, then ip_vs_add_dest / ip_vs_edit_dest.
  if (key.address.family != svc.family && spec.fwd != FwdMethod::kTunnel) return Status::kernel(EINVAL, "");
  if (spec.weight < 0) return Status::kernel(ERANGE, "");
  if (spec.lowerThreshold > spec.upperThreshold) return Status::kernel(ERANGE, "");
  if (spec.tunType == TunnelType::kGue && spec.tunPort == 0) return Status::kernel(EINVAL, "");
  return Status::ok();
}

Status FakeIpvsClient::applyOne(const Op& op) {
  const ServiceKey key = lookupKey(op.service);
  if (auto f = faults_.find(key); f != faults_.end() && !f->second.empty()) {
    const Fault fault = f->second.front();
    f->second.erase(f->second.begin());
    if (f->second.empty()) faults_.erase(f);
    if (fault.applied) (void)applyOne(op);
    return kernelError(fault.errnum, op);
  }
  if (key.family != Family::kV4 && key.family != Family::kV6) return kernelError(EAFNOSUPPORT, op);

  auto it = table_.services.find(key);
  using K = Op::Kind;
  if (op.kind != K::kAddService && it == table_.services.end()) return kernelError(ESRCH, op);

  switch (op.kind) {
    case K::kAddService:
    case K::kUpdateService: {
      if (op.kind == K::kAddService && it != table_.services.end()) return kernelError(EEXIST, op);
      const ServiceSpec& s = op.serviceSpec;
      // ip_vs_svc_policy: longer names fail the attribute policy, which
      // ip_vs_genl_parse_service answers with EINVAL before any lookup.
      if (s.scheduler.size() >= kSchedNameMax || s.pe.size() > kPeNameMax) return kernelError(EINVAL, op);
      if (s.scheduler != "none" && !schedulers_.count(s.scheduler)) return kernelError(ENOENT, op);
      if (!s.pe.empty() && s.pe != "sip") return kernelError(ENOENT, op);
      if (key.family == Family::kV6 && (s.netmask < 1 || s.netmask > 128)) return kernelError(EINVAL, op);
      ServiceSpec stored = s;
      stored.flags |= kSvcFlagHashed;  // the kernel hashes every service it keeps
      if (op.kind == K::kAddService) {
        ServiceState st;
        st.spec = stored;
        table_.services.emplace(key, std::move(st));
      } else {
        it->second.spec = stored;
      }
      return Status::ok();
    }
    case K::kDeleteService:
      table_.services.erase(it);
      return Status::ok();
    case K::kAddDest:
    case K::kUpdateDest:
    case K::kDeleteDest: {
      if (op.dest.address.family != Family::kV4 && op.dest.address.family != Family::kV6) {
        return kernelError(EAFNOSUPPORT, op);
      }
      auto& dests = it->second.dests;
      auto d = dests.find(op.dest);
      if (op.kind == K::kDeleteDest) {
        if (d == dests.end()) return kernelError(ENOENT, op);
        dests.erase(d);
        return Status::ok();
      }
      if (Status s = checkDest(key, op.dest, op.destSpec); !s.isOk()) return kernelError(s.errnum(), op);
      if (op.kind == K::kAddDest) {
        if (d != dests.end()) return kernelError(EEXIST, op);
        // ip_vs_new_dest: with no routes in a fresh namespace, inet_addr_type() reduces to these classes.
        if (!isUnicastDestAddress(op.dest.address)) return kernelError(EINVAL, op);
        DestState ds;
        ds.spec = op.destSpec;
        dests.emplace(op.dest, ds);
      } else {
        if (d == dests.end()) return kernelError(ENOENT, op);
        d->second.spec = op.destSpec;
      }
      return Status::ok();
    }
  }
  return kernelError(EINVAL, op);
}

StatusOr<Timeouts> FakeIpvsClient::getTimeouts() { return timeouts_; }

Status FakeIpvsClient::setTimeouts(const Timeouts& t) {
  ++writes_;
  // ip_vs_set_timeout: each must fit INT_MAX jiffies, else EINVAL and nothing
  // changes (HZ as Debian's kernels have it).
  for (uint32_t v : {t.tcp, t.tcpFin, t.udp}) {
    if (v > static_cast<uint32_t>(INT_MAX / kHz)) return Status::kernel(EINVAL, "setting timeouts");
  }
  if (t.tcp) timeouts_.tcp = t.tcp;
  if (t.tcpFin) timeouts_.tcpFin = t.tcpFin;
  if (t.udp) timeouts_.udp = t.udp;
  return Status::ok();
}

Status FakeIpvsClient::zero(const std::optional<ServiceKey>& key) {
  ++writes_;
  auto clear = [](ServiceState& s) {
    s.stats = Stats{};
    for (auto& [dk, d] : s.dests) d.counters.stats = Stats{};
  };
  if (!key) {
    for (auto& [k, s] : table_.services) clear(s);
    return Status::ok();
  }
  auto it = table_.services.find(lookupKey(*key));
  if (it == table_.services.end()) return Status::kernel(ESRCH, "zero " + key->toString());
  clear(it->second);
  return Status::ok();
}

Status FakeIpvsClient::flush() {
  ++writes_;
  table_.services.clear();
  return Status::ok();
}

StatusOr<Info> FakeIpvsClient::info() { return Info{0x010201, 4096}; }

Status FakeIpvsClient::setCounters(const ServiceKey& key, const DestKey& dest, const DestCounters& c) {
  auto it = table_.services.find(lookupKey(key));
  if (it == table_.services.end()) return Status::kernel(ESRCH, key.toString());
  auto d = it->second.dests.find(dest);
  if (d == it->second.dests.end()) return Status::kernel(ENOENT, dest.toString());
  d->second.counters = c;
  return Status::ok();
}

std::optional<uint32_t> FakeIpvsClient::rawFlags(const ServiceKey& key) const {
  auto it = table_.services.find(lookupKey(key));
  if (it == table_.services.end()) return std::nullopt;
  return it->second.spec.flags;
}

}  // namespace kipvs::ipvs
