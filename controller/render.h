#pragma once
// Text and JSON for people and tools: the live table (ipvsadm rules, a listing
// with each real server's share of connections, JSON) and plans.

#include <ostream>
#include <string>
#include <vector>

#include "controller/desired.h"
#include "controller/plan.h"
#include "ipvs/model.h"

namespace kipvs::controller {

// `ipvsadm -Sn` form: what `ipvsadm -R` reads back. Services and dests sorted.
// Returns the virtual servers left out: those of a protocol ipvsadm cannot name.
std::vector<ipvs::ServiceKey> renderIpvsadmRules(const ipvs::Table& table, std::ostream& out);

// A listing like `ipvsadm -Ln`, plus each real server's share of the
// service's connections (active + inactive): long-lived connections (gRPC,
// HTTP/2) piling onto one pod show up here.
void renderTableText(const ipvs::Table& table, std::ostream& out);

// The whole table with specs, counters and stats, as JSON.
void renderTableJson(const ipvs::Table& table, std::ostream& out);

struct PlanContext {
  const Desired* desired = nullptr;        // origins and notes (may be null)
  const ipvs::Table* actual = nullptr;     // for "old -> new" in updates (may be null)
};

void renderPlanText(const Plan& plan, const PlanContext& ctx, std::ostream& out);
void renderPlanJson(const Plan& plan, const PlanContext& ctx, std::ostream& out);

// JSON string escaping, shared by the JSON renderers.
std::string jsonEscape(const std::string& s);

// reconcile -o json when it stops before any write (a file that does not
// parse, the lock, the kernel unreachable, a refused input): one object on
// stdout all the same, {"dryRun":..,"fatal":{"message":..,"errno":..},"exitCode":2}.
void renderFatalJson(const Status& fatal, bool dryRun, std::ostream& out);

}  // namespace kipvs::controller
