#pragma once
// plan(desired, actual, ownership) -> the smallest ordered set of kernel writes.
// Pure: no kernel, no I/O. The same per-service function serves a full sync
// and an incremental one, so planning N services costs O(N log table), not
// O(table).

#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "ipvs/client.h"
#include "ipvs/model.h"

namespace kipvs::controller {

// What kipvs may touch. Everything else in the table (an `ipvsadm -A` by
// hand, keepalived) is never written, and the plan says it was left alone.
struct Ownership {
  std::set<ipvs::Address> vips;      // addresses on kipvs's dummy interface (and the ones it is about to bind)
  std::set<ipvs::Address> nodeIps;   // NodePort virtual servers live on these
  uint16_t nodePortMin = 30000, nodePortMax = 32767;
  std::set<ipvs::ServiceKey> recorded;  // kipvs made these where nothing above marks them (owned_record.h)
  // Invalid Services' (Desired::kept): whatever of this the kernel has is
  // left as it is, owned or not.
  std::set<ipvs::ServiceKey> keptKeys;
  std::set<ipvs::Address> keptAddresses;  // every virtual server on these
  bool keepAll = false;  // every virtual server not wanted (a Service did not parse)
  // Wanted virtual servers whose real servers only come and change, never go
  // (an EndpointSlice of their Service may be among those that did not parse).
  std::set<ipvs::ServiceKey> keptRealServers;
  bool keepAllRealServers = false;  // ... of every virtual server

  bool owns(const ipvs::ServiceKey& key) const;
  bool keeps(const ipvs::ServiceKey& key) const;
  bool keepsRealServers(const ipvs::ServiceKey& key) const {
    return keepAllRealServers || keptRealServers.count(key) > 0;
  }
};

struct DestDrain {
  ipvs::DestKey dest;
  uint32_t activeConns = 0;
  uint32_t inactiveConns = 0;
};

// The writes for one virtual server, in the order they must happen.
struct ServicePlan {
  enum class Action : uint8_t { kCreate, kUpdate, kDests, kDelete };
  ipvs::ServiceKey key;
  Action action = Action::kDests;
  std::vector<ipvs::Op> ops;        // service op (if any) first, then dest adds, updates, deletes
  std::vector<DestDrain> draining;  // dests held at weight 0 until their connections end
};

struct Plan {
  std::vector<ServicePlan> services;          // creates/updates first, deletions last; sorted by key within each
  std::vector<ipvs::ServiceKey> leftAlone;    // in the kernel, not desired, not ours: untouched
  std::vector<ipvs::ServiceKey> kept;         // in the kernel, an invalid Service's (Ownership::keeps): untouched
  size_t opCount() const;
  size_t drainingCount() const;
  bool empty() const { return opCount() == 0; }
};

// One service. desired/actual may be null (absent). `owned` only matters when
// desired is null: an unowned, undesired service is left alone. With
// keepGone, real servers the kernel has and desired lacks stay as they are.
ServicePlan planService(const ipvs::ServiceKey& key, const ipvs::ServiceState* desired,
                        const ipvs::ServiceState* actual, bool owned, bool keepGone = false);

// The service op planService() puts first for a desired service: an add when
// the kernel lacks it, an update when its spec differs, else none. A reconcile
// sends these before the real servers are planned (same ops).
std::optional<ipvs::Op> serviceOp(const ipvs::ServiceKey& key, const ipvs::ServiceState& desired,
                                  const ipvs::ServiceState* actual);
// serviceOp() of every desired service, in key order: apply()'s first batch.
std::vector<ipvs::Op> serviceOps(const ipvs::Table& desired, const ipvs::Table& actual);

// Every service in desired ∪ actual.
Plan plan(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own);

// plan() of a desired table whose real servers are not there yet: fill(key,
// state) gives each desired service its real servers just before it is
// planned (DesiredBuilder::fillDests), and placed(sp) sees each creation or
// update as it joins the plan, in plan order (a reconcile sends their dest
// ops while the rest is planned). Same plan as plan() of the filled table.
using FillDests = std::function<void(const ipvs::ServiceKey&, ipvs::ServiceState&)>;
Plan planFilling(ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own, const FillDests& fill,
                 const std::function<void(const ServicePlan&)>& placed);

// Only the given keys (an incremental sync after an event): cost is
// proportional to keys.size(), whatever the size of the tables.
Plan planKeys(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own,
              std::span<const ipvs::ServiceKey> keys);

// A departing TCP (and fwmark) real server with connections drains at weight 0;
// UDP and SCTP ones go at once (their "connections" are only conntrack entries).
bool drainsGracefully(const ipvs::ServiceKey& key);

}  // namespace kipvs::controller
