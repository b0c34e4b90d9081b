#include "controller/plan.h"

#include <algorithm>
#include <optional>

namespace kipvs::controller {

using ipvs::DestKey;
using ipvs::DestState;
using ipvs::Op;
using ipvs::ServiceKey;
using ipvs::ServiceState;

bool Ownership::owns(const ServiceKey& key) const {
  if (key.isFwmark()) return false;  // kipvs makes no fwmark services (yet)
  if (vips.count(key.address) || recorded.count(key)) return true;
  return nodeIps.count(key.address) && key.port >= nodePortMin && key.port <= nodePortMax;
}

bool Ownership::keeps(const ServiceKey& key) const {
  if (!owns(key)) return false;  // what is not ours stays "left alone"
  if (keepAll) return true;
  return keptKeys.count(key) || keptAddresses.count(key.address);
}

bool drainsGracefully(const ServiceKey& key) {
  return key.isFwmark() || key.protocol == ipvs::Protocol::kTcp;
}

size_t Plan::opCount() const {
  size_t n = 0;
  for (const auto& s : services) n += s.ops.size();
  return n;
}

size_t Plan::drainingCount() const {
  size_t n = 0;
  for (const auto& s : services) n += s.draining.size();
  return n;
}

namespace {

// Dest ops for a service that exists (or is being created) with `desired`
// dests, given what the kernel has. Adds, then updates, then deletes: new
// real servers take traffic before old ones stop. One merge walk over the two
// sorted maps (no lookups): a converged table costs one pass of compares.
void planDests(const ServiceKey& key, const std::map<DestKey, DestState>& desired,
               const std::map<DestKey, DestState>* actual, bool keepGone, ServicePlan& out) {
  static const std::map<DestKey, DestState> kNone;
  const auto& have = actual ? *actual : kNone;
  // Adds go straight into out.ops (they come first); the rarer updates,
  // quiesces and deletes wait their turn here. A service being created is
  // all adds, into the room planService() made: one allocation for its ops,
  // no copies (VM, 10,000 x 10: this planning runs beside the writes, and
  // its allocations took CPU from them).
  std::vector<Op> updates, quiesces, deletes;
  const bool graceful = drainsGracefully(key);
  auto d = desired.begin();
  auto h = have.begin();
  while (d != desired.end() || h != have.end()) {
    if (h == have.end() || (d != desired.end() && d->first < h->first)) {
      out.ops.push_back(Op::addDest(key, d->first, d->second.spec));
      ++d;
    } else if (d == desired.end() || h->first < d->first) {
      const auto& c = h->second.counters;
      if (keepGone) {
        // left as it is
      } else if (graceful && c.activeConns + c.inactiveConns > 0) {
        out.draining.push_back({h->first, c.activeConns, c.inactiveConns});
        if (h->second.spec.weight != 0) {
          ipvs::DestSpec quiesced = h->second.spec;
          quiesced.weight = 0;
          quiesces.push_back(Op::quiesceDest(key, h->first, quiesced));
        }
      } else {
        deletes.push_back(Op::deleteDest(key, h->first));
      }
      ++h;
    } else {
      if (!(h->second.spec == d->second.spec)) updates.push_back(Op::updateDest(key, d->first, d->second.spec));
      ++d;
      ++h;
    }
  }
  for (auto* v : {&updates, &quiesces, &deletes}) {
    out.ops.insert(out.ops.end(), std::make_move_iterator(v->begin()), std::make_move_iterator(v->end()));
  }
}

}  // namespace

std::optional<Op> serviceOp(const ServiceKey& key, const ServiceState& desired, const ServiceState* actual) {
  if (!actual) return Op::addService(key, desired.spec);
  if (!(desired.spec == actual->spec)) return Op::updateService(key, desired.spec);  // SET in place: never delete + add
  return std::nullopt;
}

ServicePlan planService(const ServiceKey& key, const ServiceState* desired, const ServiceState* actual,
                        bool owned, bool keepGone) {
  ServicePlan p;
  p.key = key;
  if (!desired) {
    if (actual && owned) {
      p.action = ServicePlan::Action::kDelete;
      p.ops.push_back(Op::deleteService(key));
    }
    return p;
  }
  if (std::optional<Op> op = serviceOp(key, *desired, actual)) {
    p.action = actual ? ServicePlan::Action::kUpdate : ServicePlan::Action::kCreate;
    if (!actual) p.ops.reserve(1 + desired->dests.size());  // the add, then one add per dest
    p.ops.push_back(std::move(*op));
  }
  planDests(key, desired->dests, actual ? &actual->dests : nullptr, keepGone, p);
  return p;
}

std::vector<Op> serviceOps(const ipvs::Table& desired, const ipvs::Table& actual) {
  std::vector<Op> out;
  out.reserve(desired.services.size());
  auto a = actual.services.begin();  // both maps in key order: one walk, no lookups
  for (const auto& [key, state] : desired.services) {
    while (a != actual.services.end() && a->first < key) ++a;
    const ServiceState* live = a != actual.services.end() && a->first == key ? &a->second : nullptr;
    if (std::optional<Op> op = serviceOp(key, state, live)) out.push_back(std::move(*op));
  }
  return out;
}

namespace {

void place(Plan& plan, std::vector<ServicePlan>& deletes, ServicePlan&& sp, bool leftAlone) {
  if (leftAlone) {
    plan.leftAlone.push_back(sp.key);
  } else if (sp.action == ServicePlan::Action::kDelete) {
    deletes.push_back(std::move(sp));
  } else if (!sp.ops.empty() || !sp.draining.empty()) {
    plan.services.push_back(std::move(sp));
  }
}

template <typename T>
const ServiceState* find(const ipvs::Table& t, const T& key) {
  auto it = t.services.find(key);
  return it == t.services.end() ? nullptr : &it->second;
}

}  // namespace

namespace {

// plan()'s merge walk over two sorted maps: O(desired + actual). fill(key,
// state) runs on each desired entry just before it is planned; placed(sp) on
// each creation or update as it joins the plan.
template <typename Desired, typename Fill, typename Placed>
Plan walk(Desired& desired, const ipvs::Table& actual, const Ownership& own, const Fill& fill, const Placed& placed) {
  Plan out;
  std::vector<ServicePlan> deletes;
  auto d = desired.services.begin();
  auto a = actual.services.begin();
  auto planned = [&](ServicePlan&& sp) {
    const size_t before = out.services.size();
    place(out, deletes, std::move(sp), false);
    if (out.services.size() > before) placed(out.services.back());
  };
  while (d != desired.services.end() || a != actual.services.end()) {
    if (a == actual.services.end() || (d != desired.services.end() && d->first < a->first)) {
      fill(d->first, d->second);
      planned(planService(d->first, &d->second, nullptr, true));
      ++d;
    } else if (d == desired.services.end() || a->first < d->first) {
      if (own.keeps(a->first)) {
        out.kept.push_back(a->first);
      } else {
        const bool owned = own.owns(a->first);
        place(out, deletes, planService(a->first, nullptr, &a->second, owned), !owned);
      }
      ++a;
    } else {
      fill(d->first, d->second);
      planned(planService(d->first, &d->second, &a->second, true, own.keepsRealServers(d->first)));
      ++d;
      ++a;
    }
  }
  for (auto& sp : deletes) out.services.push_back(std::move(sp));
  return out;
}

}  // namespace

Plan plan(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own) {
  return walk(desired, actual, own, [](const ServiceKey&, const ServiceState&) {}, [](const ServicePlan&) {});
}

Plan planFilling(ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own, const FillDests& fill,
                 const std::function<void(const ServicePlan&)>& placed) {
  return walk(desired, actual, own, fill, [&](const ServicePlan& sp) {
    if (placed) placed(sp);
  });
}

Plan planKeys(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own,
              std::span<const ServiceKey> keys) {
  std::vector<ServiceKey> sorted(keys.begin(), keys.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  Plan out;
  std::vector<ServicePlan> deletes;
  for (const auto& key : sorted) {
    const ServiceState* want = find(desired, key);
    const ServiceState* have = find(actual, key);
    if (!want && !have) continue;
    if (!want && own.keeps(key)) {
      out.kept.push_back(key);
      continue;
    }
    const bool owned = want || own.owns(key);
    place(out, deletes, planService(key, want, have, owned, want && own.keepsRealServers(key)),
          !want && have && !owned);
  }
  for (auto& sp : deletes) out.services.push_back(std::move(sp));
  return out;
}

}  // namespace kipvs::controller
