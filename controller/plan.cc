#include "controller/plan.h"

#include <algorithm>

namespace kipvs::controller {

using ipvs::DestKey;
using ipvs::DestState;
using ipvs::Op;
using ipvs::ServiceKey;
using ipvs::ServiceState;

bool Ownership::owns(const ServiceKey& key) const {
  if (key.isFwmark()) return false;  // kipvs makes no fwmark services (yet)
  if (vips.count(key.address)) return true;
  return nodeIps.count(key.address) && key.port >= nodePortMin && key.port <= nodePortMax;
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
               const std::map<DestKey, DestState>* actual, ServicePlan& out) {
  static const std::map<DestKey, DestState> kNone;
  const auto& have = actual ? *actual : kNone;
  std::vector<Op> adds, updates, quiesces, deletes;
  const bool graceful = drainsGracefully(key);
  auto d = desired.begin();
  auto h = have.begin();
  while (d != desired.end() || h != have.end()) {
    if (h == have.end() || (d != desired.end() && d->first < h->first)) {
      adds.push_back(Op::addDest(key, d->first, d->second.spec));
      ++d;
    } else if (d == desired.end() || h->first < d->first) {
      const auto& c = h->second.counters;
      if (graceful && c.activeConns + c.inactiveConns > 0) {
        out.draining.push_back({h->first, c.activeConns, c.inactiveConns});
        if (h->second.spec.weight != 0) {
          ipvs::DestSpec quiesced = h->second.spec;
          quiesced.weight = 0;
          quiesces.push_back(Op::updateDest(key, h->first, quiesced));
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
  for (auto* v : {&adds, &updates, &quiesces, &deletes}) {
    out.ops.insert(out.ops.end(), std::make_move_iterator(v->begin()), std::make_move_iterator(v->end()));
  }
}

}  // namespace

ServicePlan planService(const ServiceKey& key, const ServiceState* desired, const ServiceState* actual,
                        bool owned) {
  ServicePlan p;
  p.key = key;
  if (!desired) {
    if (actual && owned) {
      p.action = ServicePlan::Action::kDelete;
      p.ops.push_back(Op::deleteService(key));
    }
    return p;
  }
  if (!actual) {
    p.action = ServicePlan::Action::kCreate;
    p.ops.push_back(Op::addService(key, desired->spec));
    planDests(key, desired->dests, nullptr, p);
    return p;
  }
  if (!(desired->spec == actual->spec)) {
    p.action = ServicePlan::Action::kUpdate;
    p.ops.push_back(Op::updateService(key, desired->spec));  // SET in place: never delete + add
  }
  planDests(key, desired->dests, &actual->dests, p);
  return p;
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

Plan plan(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own) {
  Plan out;
  std::vector<ServicePlan> deletes;
  auto d = desired.services.begin();
  auto a = actual.services.begin();
  // Merge walk over two sorted maps: O(desired + actual).
  while (d != desired.services.end() || a != actual.services.end()) {
    if (a == actual.services.end() || (d != desired.services.end() && d->first < a->first)) {
      place(out, deletes, planService(d->first, &d->second, nullptr, true), false);
      ++d;
    } else if (d == desired.services.end() || a->first < d->first) {
      const bool owned = own.owns(a->first);
      place(out, deletes, planService(a->first, nullptr, &a->second, owned), !owned);
      ++a;
    } else {
      place(out, deletes, planService(d->first, &d->second, &a->second, true), false);
      ++d;
      ++a;
    }
  }
  for (auto& sp : deletes) out.services.push_back(std::move(sp));
  return out;
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
    const bool owned = want || own.owns(key);
    place(out, deletes, planService(key, want, have, owned), !want && have && !owned);
  }
  for (auto& sp : deletes) out.services.push_back(std::move(sp));
  return out;
}

}  // namespace kipvs::controller
