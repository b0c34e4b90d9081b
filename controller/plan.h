#pragma once
// plan(desired, actual, ownership) -> the smallest ordered set of kernel writes.
// Pure: no kernel, no I/O. The same per-service function serves a full sync
// and an incremental one, so planning N services costs O(N log table), not
// O(table).

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

  bool owns(const ipvs::ServiceKey& key) const;
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
  size_t opCount() const;
  size_t drainingCount() const;
  bool empty() const { return opCount() == 0; }
};

// One service. desired/actual may be null (absent). `owned` only matters when
// desired is null: an unowned, undesired service is left alone.
ServicePlan planService(const ipvs::ServiceKey& key, const ipvs::ServiceState* desired,
                        const ipvs::ServiceState* actual, bool owned);

// Every service in desired ∪ actual.
Plan plan(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own);

// Only the given keys (an incremental sync after an event): cost is
// proportional to keys.size(), whatever the size of the tables.
Plan planKeys(const ipvs::Table& desired, const ipvs::Table& actual, const Ownership& own,
              std::span<const ipvs::ServiceKey> keys);

// A departing TCP (and fwmark) real server with connections drains at weight 0;
// UDP and SCTP ones go at once (their "connections" are only conntrack entries).
bool drainsGracefully(const ipvs::ServiceKey& key);

}  // namespace kipvs::controller
