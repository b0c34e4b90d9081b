#include "controller/reconcile.h"

#include <glog/logging.h>

#include <algorithm>
#include <functional>
#include <system_error>
#include <thread>

#include "controller/helper_thread.h"
#include "controller/render.h"

namespace kipvs::controller {

using ipvs::ServiceKey;

int ReconcileResult::exitCode() const {
  if (!fatal.isOk()) return 2;
  if (!objectErrors.empty() || !report.ok() || !hostErrors.empty()) return 1;
  return 0;
}

namespace {

// Virtual servers and real servers the kernel would refuse (ipvs::validate*)
// are dropped with an error each, so one bad object cannot fail a batch or
// hide among kernel errors. Errors are kept with their key: they follow the
// objects' own errors in key order.
using KeyedErrors = std::vector<std::pair<ServiceKey, ObjectError>>;

std::string originOf(const Desired& desired, const ServiceKey& key) {
  auto origin = desired.origins.find(key);
  return origin != desired.origins.end() ? origin->second.service : key.toString();
}

void dropInvalidServices(Desired& desired, KeyedErrors& errors) {
  for (auto it = desired.table.services.begin(); it != desired.table.services.end();) {
    const ServiceKey& key = it->first;
    if (Status s = ipvs::validateService(key, it->second.spec); !s.isOk()) {
      errors.push_back({key, {"Service", originOf(desired, key), s.message()}});
      desired.origins.erase(key);
      desired.kept.keys.insert(key);
      it = desired.table.services.erase(it);
      continue;
    }
    ++it;
  }
}

void dropInvalidDests(const Desired& desired, const ServiceKey& key, ipvs::ServiceState& state, KeyedErrors& errors) {
  auto& dests = state.dests;
  for (auto d = dests.begin(); d != dests.end();) {
    if (Status s = ipvs::validateDest(key, d->first, d->second.spec); !s.isOk()) {
      errors.push_back({key, {"Service", originOf(desired, key), s.message()}});
      d = dests.erase(d);
    } else {
      ++d;
    }
  }
}

// desired.errors (step 1's, sorted) with the EndpointSlices' and the kernel
// rules', in the order computeDesired() and a validation pass over its table
// would give them.
void finishErrors(Desired& desired, std::vector<ObjectError>&& sliceErrors, KeyedErrors&& invalid) {
  addSliceErrors(desired, std::move(sliceErrors));
  std::stable_sort(invalid.begin(), invalid.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [key, e] : invalid) desired.errors.push_back(std::move(e));
}

// Dest ops go to the writing thread in chunks of about this many: large
// enough that each is one pipelined send, small enough that the writes start
// soon after the first services are planned.
constexpr size_t kDestChunk = 4096;

void merge(ApplyReport& into, ApplyReport&& from) {
  into.attempted += from.attempted;
  into.succeeded += from.succeeded;
  for (auto& f : from.failures) into.failures.push_back(std::move(f));
  into.failedServices.merge(from.failedServices);
  for (const auto& [k, n] : from.skippedDests) into.skippedDests[k] += n;
  into.stale.merge(from.stale);
}

// `from` is a later attempt at `keys` (planned anew: `replanned` writes): it
// replaces what `into` says of them. The writes it replaces (those that
// failed or were not sent) leave the planned count, so that once a retry has
// converged every planned write is either succeeded or failed.
void supersede(ApplyReport& into, size_t& planned, const std::set<ServiceKey>& keys, ApplyReport&& from,
               size_t replanned) {
  size_t replaced = std::erase_if(into.failures, [&](const OpFailure& f) { return keys.count(f.op.service) > 0; });
  for (const auto& k : keys) {
    into.stale.erase(k);
    into.failedServices.erase(k);
    if (auto it = into.skippedDests.find(k); it != into.skippedDests.end()) {
      replaced += it->second;
      into.skippedDests.erase(it);
    }
  }
  planned = planned - std::min(planned, replaced) + replanned;
  merge(into, std::move(from));
}

// Re-dumps just these services into `actual` (an incremental refresh).
Status refresh(ipvs::IpvsClient& client, const std::set<ServiceKey>& keys, ipvs::Table& actual) {
  for (const auto& k : keys) {
    auto one = client.dumpService(k);
    if (!one.isOk()) return one.status();
    if (one->has_value()) {
      actual.services[k] = std::move(**one);
    } else {
      actual.services.erase(k);
    }
  }
  return Status::ok();
}

// ReconcileOptions::allowEmpty: an input with no Service, or no EndpointSlice,
// that would empty what kipvs owns in the table.
Status refuseEmptyInput(const Cluster& cluster, const ipvs::Table& actual, const Ownership& own) {
  // What would go: what kipvs owns, less what invalid Services keep.
  size_t services = 0, dests = 0;
  for (const auto& [key, state] : actual.services) {
    if (!own.owns(key) || own.keeps(key)) continue;
    ++services;
    if (!own.keepsRealServers(key)) dests += state.dests.size();
  }
  const std::string hint =
      " (what a failed or partial `kubectl get services,endpointslices` gives); nothing was changed "
      "(--allow-empty applies it)";
  // Objects that did not parse are not "none": say so (their errors are printed first).
  auto unreadable = [&](std::string_view kind) {
    const size_t n = std::count_if(cluster.errors.begin(), cluster.errors.end(),
                                   [&](const ObjectError& e) { return e.kind == kind; });
    return n == 0 ? std::string() : " (" + std::to_string(n) + " did not parse: see the errors)";
  };
  // (A Service that did not parse keeps every virtual server: none would go.)
  if (cluster.services.empty() && services > 0) {
    return Status::error(Code::kInvalid, "the input has no valid Service: it would delete all " +
                                             std::to_string(services) + " virtual servers kipvs owns" + hint);
  }
  if (!cluster.services.empty() && cluster.slices.empty() && dests > 0) {
    return Status::error(Code::kInvalid, "the input has Services but no valid EndpointSlice" +
                                             unreadable("EndpointSlice") + ": it would remove all " +
                                             std::to_string(dests) + " real servers of the " +
                                             std::to_string(services) + " virtual servers kipvs owns" + hint);
  }
  return Status::ok();
}

std::set<ServiceKey> drainingKeys(const Plan& p) {
  std::set<ServiceKey> keys;
  for (const auto& sp : p.services) {
    if (!sp.draining.empty()) keys.insert(sp.key);
  }
  return keys;
}

}  // namespace

ReconcileResult reconcile(const Cluster& cluster, const ReconcileOptions& opts, ipvs::IpvsClient& client,
                          HostNetwork& host, std::ostream& out, std::ostream& err, const Sleeper& sleep,
                          const TableSource& firstRead, const TableReady& firstReadReady,
                          const IdleWork& whileWriting) {
  ReconcileResult result;
  // Stops the pass before any write: the reason on err, and with -o json the
  // one object on out that a caller parses either way.
  auto fail = [&](Status s) {
    result.fatal = std::move(s);
    err << "error: " << result.fatal.toString() << "\n";
    if (opts.output == OutputFormat::kJson) renderFatalJson(result.fatal, opts.dryRun, out);
  };
  NodeFacts node = opts.node;
  if (opts.nodeIpsFromHost) {
    auto ips = host.nodeAddresses(opts.dummyInterface);
    if (!ips.isOk()) {
      fail(ips.status().withContext("discovering node addresses (give --node-ip)"));
      return result;
    }
    node.nodeIps = *ips;
  }
  // What is local on this host already, a NodePort address or not (with
  // --node-ip, the host's others; an anycast VIP on lo): in route mode a VIP
  // among these gets no route of kipvs's (its own local route makes it
  // local; the kernel would answer ours with EEXIST, or add a second one for
  // IPv6), so nothing in the kernel marks its virtual servers as kipvs's: the
  // owned record does (below). Without --node-ip the node addresses are all
  // of them.
  std::set<ipvs::Address> localIps(node.nodeIps.begin(), node.nodeIps.end());
  if (opts.vipMode == VipMode::kRoute && !opts.nodeIpsFromHost) {
    auto local = host.nodeAddresses(opts.dummyInterface);
    if (!local.isOk()) {
      fail(local.status().withContext("listing this host's addresses"));
      return result;
    }
    localIps.insert(local->begin(), local->end());
  }

  // The virtual servers first (DesiredBuilder step 1): their writes can go
  // out while the real servers are still being worked out (below).
  std::optional<DesiredBuilder> builder(std::in_place, cluster, node);
  Desired desired = builder->servers();
  KeyedErrors invalid;
  dropInvalidServices(desired, invalid);
  VLOG(1) << "desired: " << desired.table.services.size() << " virtual servers";
  // Step 2 starts on a helper thread now, beside the wait for the table read
  // and the writes; the plan below takes each service's real servers as it goes.
  builder->startHelping();

  // What is local through our dummy interface is ours: its VIPs' services
  // may be deleted. `mine` is made local the way opts.vipMode says; `other`
  // the other way (left by a run in the other mode): all of it goes, the VIPs
  // still wanted come back in the current form.
  std::set<ipvs::Address> mine, other;
  if (!opts.dryRun) {
    if (Status s = host.ensureDummy(opts.dummyInterface); !s.isOk()) {
      fail(s);
      return result;
    }
  }
  {
    auto addrs = host.boundAddresses(opts.dummyInterface);
    auto routes =
        addrs.isOk() ? host.localRoutes(opts.dummyInterface) : StatusOr<std::set<ipvs::Address>>(addrs.status());
    if (addrs.isOk() && routes.isOk()) {
      const bool routeMode = opts.vipMode == VipMode::kRoute;
      mine = std::move(routeMode ? *routes : *addrs);
      other = std::move(routeMode ? *addrs : *routes);
    } else if (!opts.dryRun) {  // a dry run before the dummy exists owns nothing yet
      fail(addrs.isOk() ? routes.status() : addrs.status());
      return result;
    }
  }

  if (firstRead && firstReadReady) {
    while (!firstReadReady() && builder->computeAhead()) {
    }
  }
  // A dump is not a snapshot: an interrupted or overrun one is read again.
  StatusOr<ipvs::Table> actualOr = firstRead ? firstRead() : client.dumpTable();
  for (int attempt = 1; !actualOr.isOk() && isTransient(actualOr.status()) && attempt <= 3; ++attempt) {
    LOG(WARNING) << "reading the IPVS table: " << actualOr.status().toString() << "; reading it again";
    sleep(std::chrono::milliseconds(100 << attempt));
    actualOr = client.dumpTable();
  }
  if (!actualOr.isOk()) {
    fail(actualOr.status().withContext("reading the IPVS table"));
    return result;
  }
  ipvs::Table actual = std::move(*actualOr);
  // The table as first read is the result's `observed`: kept apart before a
  // retry or drain poll refreshes `actual` with what the kernel has since.
  std::optional<ipvs::Table> firstSeen;
  VLOG(1) << "read the live table: " << actual.services.size() << " virtual servers";

  // What kipvs made where the kernel does not mark it as kipvs's
  // (owned_record.h). A record that cannot be read is left as it is: its
  // virtual servers are not owned this run, and the error says why.
  std::set<ServiceKey> recorded;
  std::vector<Status> recordErrors;
  bool recordUsable = true;
  if (StatusOr<std::set<ServiceKey>> r = host.ownedRecord(); r.isOk()) {
    recorded = std::move(*r);
  } else {
    recordUsable = false;
    recordErrors.push_back(r.status().withContext("reading the record of owned virtual servers"));
  }

  auto ownership = [&] {
    Ownership o;
    o.recorded = recorded;
    o.vips = mine;
    o.vips.insert(other.begin(), other.end());
    o.nodeIps.insert(node.nodeIps.begin(), node.nodeIps.end());
    // The desired VIPs kipvs is about to make local are its own. In route mode
    // one that is a node address (an externalIP or LoadBalancer IP naming the
    // node) gets no route (below): nothing of kipvs's makes it local, and
    // owning it would own every virtual server on the node's address
    // (keepalived's, an `ipvsadm -A` by hand), not only its NodePorts.
    for (const auto& v : desired.vips) {
      if (opts.vipMode == VipMode::kRoute && localIps.count(v)) continue;
      o.vips.insert(v);
    }
    o.nodePortMin = node.nodePortMin;
    o.nodePortMax = node.nodePortMax;
    o.keptAddresses = desired.kept.addresses;
    o.keptKeys = desired.kept.keys;
    o.keepAll = desired.kept.everything;
    o.keptRealServers = desired.kept.realServers;
    o.keepAllRealServers = desired.kept.realServersEverywhere;
    return o;
  };

  // Only an input without Services or without EndpointSlices needs the look
  // (the ownership is built again below, off the path to the first write).
  if (!opts.allowEmpty && (cluster.services.empty() || cluster.slices.empty())) {
    if (Status s = refuseEmptyInput(cluster, actual, ownership()); !s.isOk()) {
      if (!opts.dryRun) {
        result.objectErrors = cluster.errors;
        for (const auto& e : cluster.errors) err << "error: " << e.toString() << "\n";
        fail(s);
        return result;
      }
      err << "warning: a run without --dry-run would refuse this input: " << s.message() << "\n";
    }
  }
  const uint64_t writesBefore = client.writeCount();  // the client is ours from here (see TableSource)

  // The desired virtual servers nothing in the kernel will mark as kipvs's
  // for good: written down before they are made, so a run that stops halfway
  // still knows them. Only those on an address local already (localIps) can
  // be such (every other desired VIP is made local through the dummy). A
  // NodePort virtual server is marked by its node address only while the
  // node has it: recorded too, it is still kipvs's to delete once the
  // address is gone (a DHCP lease changed, --node-ip changed).
  std::set<ServiceKey> unmarked;
  for (const auto& ip : localIps) {
    // Marked by the dummy once this run is done: `other` is converted or
    // removed by it, so a node address bound by an address-mode run marks
    // nothing in route mode.
    if (mine.count(ip) || (opts.vipMode == VipMode::kAddress && desired.vips.count(ip))) continue;
    for (ipvs::Protocol p : {ipvs::Protocol::kTcp, ipvs::Protocol::kUdp, ipvs::Protocol::kSctp}) {
      for (auto it = desired.table.services.lower_bound(ServiceKey::make(p, ip, 0));
           it != desired.table.services.end() && it->first.protocol == p && it->first.address == ip; ++it) {
        unmarked.insert(it->first);
      }
    }
  }
  std::set<ServiceKey> storedRecord = recorded;
  std::vector<std::string> recordChanges;
  auto storeRecord = [&](std::set<ServiceKey> keys) {
    if (!recordUsable || keys == storedRecord) return;
    if (Status s = host.storeOwnedRecord(keys); !s.isOk()) {
      recordErrors.push_back(s.withContext("recording owned virtual servers"));
      return;
    }
    for (const auto& k : keys) {
      if (!storedRecord.count(k)) recordChanges.push_back("recorded " + k.toString() + " as kipvs's");
    }
    for (const auto& k : storedRecord) {
      if (!keys.count(k)) recordChanges.push_back("unrecorded " + k.toString());
    }
    storedRecord = std::move(keys);
  };
  if (!opts.dryRun) {
    std::set<ServiceKey> ahead = recorded;
    ahead.insert(unmarked.begin(), unmarked.end());
    storeRecord(std::move(ahead));
  }

  // The writes start now, on a thread of their own: the service adds and
  // updates need only step 1 and the live table, and go first (apply's first
  // batch); the dest ops follow chunk by chunk as this thread plans them
  // (below). The kernel sees the same writes in the same order as from
  // apply() of the finished plan. The writer reads the desired services'
  // keys and specs, which nothing changes any more; the planner fills in
  // their real servers meanwhile.
  OpStream destOps;
  ApplyReport written;
  std::thread writer;
  if (!opts.dryRun) {
    try {
      writer = std::thread([&] {
        std::vector<ipvs::Op> svcOps = serviceOps(desired.table, actual);
        VLOG(1) << "writing " << svcOps.size() << " service adds and updates; real servers follow as planned";
        written = applyStreamed(svcOps, destOps, result.plan, client);
        VLOG(1) << "writes done; they waited " << destOps.waited().count() / 1000 << " ms for the plan";
      });
    } catch (const std::system_error&) {
      // No thread: plan first, then write (below).
    }
  }

  const Ownership own = ownership();

  // The real servers (DesiredBuilder step 2), planned service by service in
  // key order as they are worked out: the plan is the one plan() gives for
  // the whole desired table. `placed` sees each creation or update as it
  // joins the plan.
  auto makePlan = [&](const std::function<void(const ServicePlan&)>& placed) {
    result.plan = planFilling(
        desired.table, actual, own,
        [&](const ServiceKey& key, ipvs::ServiceState& state) {
          builder->fillDests(key, state);
          dropInvalidDests(desired, key, state, invalid);
        },
        placed);
    finishErrors(desired, builder->stopHelping(), std::move(invalid));
    VLOG(1) << "planned " << result.plan.opCount() << " writes";
    // Its scratch (the slices' index, the worked-out real servers) goes now,
    // beside the writes, not when they are done (VM, 10,000 Services: freeing
    // it at the end held the result back 30-45 ms).
    builder.reset();
  };
  PlanContext ctx{&desired, &actual};

  // toConvert: wanted, but local the other way; removed before toBind adds
  // them back in the current form. toUnbind / toUnbindOther: no longer
  // wanted, removed after their services are gone.
  // In route mode a VIP that is one of this node's addresses (an externalIP
  // naming the node, say) is local already: the kernel would answer our add
  // with EEXIST on every run, and the route would never be listed as ours.
  std::vector<ipvs::Address> toBind, toUnbind, toConvert, toUnbindOther;
  for (const auto& v : desired.vips) {
    if (mine.count(v) || (opts.vipMode == VipMode::kRoute && localIps.count(v))) continue;
    toBind.push_back(v);
  }
  // An invalid Service's VIPs stay as they are, with its virtual servers.
  auto kept = [&](const ipvs::Address& v) { return desired.kept.everything || desired.kept.vips.count(v) > 0; };
  for (const auto& v : mine) {
    if (!desired.vips.count(v) && !kept(v)) toUnbind.push_back(v);
  }
  for (const auto& v : other) {
    if (desired.vips.count(v)) {
      toConvert.push_back(v);
    } else if (!kept(v)) {
      toUnbindOther.push_back(v);
    }
  }

  const VipMode otherMode = opts.vipMode == VipMode::kRoute ? VipMode::kAddress : VipMode::kRoute;
  // Plan lines ("+ local route 10.96.0.10 dev kipvs0", "- unbind 10.96.0.10
  // from kipvs0") and host changes ("added local route ...", "bound ...").
  const std::string& ifname = opts.dummyInterface;
  auto vipLine = [&](VipMode m, bool add, const ipvs::Address& v) {
    if (m == VipMode::kRoute) return std::string(add ? "+" : "-") + " local route " + v.toString() + " dev " + ifname;
    return std::string(add ? "+ bind " : "- unbind ") + v.toString() + (add ? " to " : " from ") + ifname;
  };
  auto vipChange = [&](VipMode m, bool add, const ipvs::Address& v) {
    if (m == VipMode::kRoute) {
      return std::string(add ? "added" : "deleted") + " local route " + v.toString() + " dev " + ifname;
    }
    return std::string(add ? "bound " : "unbound ") + v.toString() + (add ? " to " : " from ") + ifname;
  };
  // The head of the output: the plan (text: its lines and the VIP lines;
  // json: the object's opening up to the "plan" value). A real run writes it
  // once the plan is made, while the kernel writes go on (see below); the
  // plan is not held in memory twice.
  auto writePlan = [&] {
    if (opts.output == OutputFormat::kText) {
      renderPlanText(result.plan, ctx, out);
      for (const auto& v : toConvert) {
        out << "  " << vipLine(otherMode, false, v) << " (left by --vip-mode=" << vipModeName(otherMode) << ")\n";
      }
      for (const auto& v : toBind) out << "  " << vipLine(opts.vipMode, true, v) << "\n";
      for (const auto& v : toUnbind) out << "  " << vipLine(opts.vipMode, false, v) << "\n";
      for (const auto& v : toUnbindOther) out << "  " << vipLine(otherMode, false, v) << "\n";
    } else {
      out << "{\"dryRun\":" << (opts.dryRun ? "true" : "false") << ",\"plan\":";
      renderPlanJson(result.plan, ctx, out);
    }
  };
  auto recordPlanAndErrors = [&] {
    result.plannedWrites = result.plan.opCount();
    result.objectErrors = desired.errors;
    for (const auto& e : desired.errors) err << "error: " << e.toString() << "\n";
  };
  if (opts.dryRun) {
    makePlan(nullptr);
    recordPlanAndErrors();
    writePlan();
  }

  // The summary's lists that only grow after the writes, rendered ahead:
  // JSON's vipMode and "bind" list; text's lines for the host changes so far.
  struct SummaryAhead {
    bool rendered = false;
    std::string json;
    std::string text;
    size_t textChanges = 0;  // host changes in `text`
  } summaryAhead;
  // ,"key":["10.96.0.1",...] of every address in `parts`, in order.
  auto listJson = [](const char* key, std::initializer_list<const std::vector<ipvs::Address>*> parts) {
    std::string json = ",\"" + std::string(key) + "\":[";
    bool first = true;
    for (const auto* part : parts) {
      for (const auto& a : *part) {
        json += (first ? "\"" : ",\"") + a.toString() + "\"";
        first = false;
      }
    }
    return json + "]";
  };
  auto vipModeAndBindJson = [&] {
    return ",\"vipMode\":\"" + std::string(vipModeName(opts.vipMode)) + "\"" + listJson("bind", {&toBind});
  };
  auto hostLines = [](const std::vector<std::string>& changes, size_t from) {
    std::string text;
    for (size_t i = from; i < changes.size(); ++i) text += "  host: " + changes[i] + "\n";
    return text;
  };
  auto renderAhead = [&](const std::vector<std::string>& changes) {
    SummaryAhead a;
    a.rendered = true;
    if (opts.output == OutputFormat::kJson) {
      a.json = vipModeAndBindJson();
    } else {
      a.text = hostLines(changes, 0);
      a.textChanges = changes.size();
    }
    return a;
  };

  if (!opts.dryRun) {
    // Results of host changes, in the order made; `errors` may be another
    // thread's vector (see below).
    auto record = [&](VipMode m, bool add, const std::vector<Status>& results, const std::vector<ipvs::Address>& addrs,
                      std::vector<std::string>& changes, std::vector<Status>& errors) {
      for (size_t i = 0; i < addrs.size(); ++i) {
        if (results[i].isOk()) {
          changes.push_back(vipChange(m, add, addrs[i]));
        } else {
          errors.push_back(results[i]);
        }
      }
    };
    auto change = [&](VipMode m, bool add, const std::vector<ipvs::Address>& addrs) {
      if (addrs.empty()) return std::vector<Status>{};
      if (m == VipMode::kRoute) {
        return add ? host.addLocalRoutes(ifname, addrs) : host.deleteLocalRoutes(ifname, addrs);
      }
      return add ? host.bindAddresses(ifname, addrs) : host.unbindAddresses(ifname, addrs);
    };

    // The host side (sysctls, VIPs) and writing out the plan run beside the
    // IPVS writes: the host changes are kernel work under another lock (rtnl,
    // not the IPVS mutex), rendering is user time that only reads the plan,
    // so on a machine with two CPUs neither adds wall time. Order between the
    // two does not matter for traffic: a virtual server whose VIP is not local
    // yet sees no packets, as if it were not there; a VIP local before its
    // virtual server is answered by the host's own stack, which is what
    // happens to a Service before kipvs programs it either way.
    //
    // The real servers are planned beside the writes too (the writer started
    // above).
    std::vector<std::string> hostChanges;
    std::vector<Status> hostErrors;
    // At the lowest priority: on two CPUs the writer and the planner keep
    // both busy, and the VIPs fit in what they leave (VM, 10,000 Services:
    // the IPVS writes took 1.74-1.94 s beside it against 1.92-2.14 s).
    auto hostTask = [&] {
      if (opts.manageSysctls) {
        auto rel = host.kernelRelease();
        Status s = rel.isOk() ? prepareIpvsSysctls(host, *rel, &hostChanges) : rel.status();
        if (!s.isOk()) hostErrors.push_back(s.withContext("sysctls"));
      }
      record(otherMode, false, change(otherMode, false, toConvert), toConvert, hostChanges, hostErrors);
      record(opts.vipMode, true, change(opts.vipMode, true, toBind), toBind, hostChanges, hostErrors);
    };
    std::thread hostWork;
    try {
      hostWork = std::thread([&] {
        lowerThisThreadPriority();
        hostTask();
      });
    } catch (const std::system_error&) {
      // No thread: done after the writes (below).
    }
    {
      // Each chunk is allocated once, at about its final size, rather than
      // grown by doubling (each step copies every op so far).
      std::vector<ipvs::Op> chunk;
      makePlan([&](const ServicePlan& sp) {
        if (chunk.capacity() == 0) chunk.reserve(kDestChunk + sp.ops.size());
        for (const auto& op : sp.ops) {
          if (!op.isServiceOp()) chunk.push_back(op);
        }
        if (chunk.size() >= kDestChunk) destOps.push(std::move(chunk));
      });
      destOps.push(std::move(chunk));
      destOps.close();
    }
    writePlan();  // while the writes go on
    bool hostDone = false;
    if (writer.joinable()) {
      if (whileWriting) whileWriting();
      // The summary's long lists that the writes do not change are rendered
      // beside them too, not after the last one (VM, 10,000 Services: the
      // VIPs made local took ~10 ms there).
      if (hostWork.joinable()) {
        hostWork.join();
        hostDone = true;
      }
      const std::vector<std::string> noChanges;
      summaryAhead = renderAhead(hostDone ? hostChanges : noChanges);  // both lvalues: no copy
      writer.join();
    } else {
      written = applyStreamed(serviceOps(desired.table, actual), destOps, result.plan, client);
    }
    if (hostWork.joinable()) {
      hostWork.join();
    } else if (!hostDone) {
      hostTask();  // no thread for it: after the writes
    }
    merge(result.report, std::move(written));
    recordPlanAndErrors();
    result.hostChanges = std::move(hostChanges);
    result.hostErrors = std::move(hostErrors);

    // Retry what a fresh look can fix: a dest op that met ESRCH saw a stale
    // table; ENOBUFS / EAGAIN / EINTR / a timeout lost answers. Re-dump just
    // those services, plan them again and apply, with backoff; permanent
    // errors (EINVAL, ENOENT scheduler, ...) are reported and not retried.
    for (int attempt = 1; attempt <= 3; ++attempt) {
      std::set<ServiceKey> retryKeys = result.report.stale;
      for (const auto& f : result.report.failures) {
        if (isTransient(f.status)) retryKeys.insert(f.op.service);
      }
      if (retryKeys.empty()) break;
      sleep(std::chrono::milliseconds(100 << attempt));
      if (!firstSeen) firstSeen = actual;
      if (Status s = refresh(client, retryKeys, actual); !s.isOk()) {
        result.hostErrors.push_back(s.withContext("re-reading services to retry"));
        break;
      }
      std::vector<ServiceKey> keys(retryKeys.begin(), retryKeys.end());
      Plan retry = planKeys(desired.table, actual, own, keys);
      supersede(result.report, result.plannedWrites, retryKeys, apply(retry, client), retry.opCount());
    }

    // The record keeps what is still wanted, what could not be deleted, and
    // what an invalid Service keeps: nothing else marks those as kipvs's.
    {
      std::set<ServiceKey> kept = unmarked;
      for (const auto& k : recorded) {
        if (!desired.table.services.count(k) && (result.report.failedServices.count(k) || own.keeps(k))) {
          kept.insert(k);
        }
      }
      storeRecord(std::move(kept));
    }

    // Unbind only after the services on those addresses are gone; a VIP whose
    // stale virtual server could not be deleted stays, so that the next run
    // still owns that virtual server and deletes it.
    {
      std::set<ipvs::Address> inUse;
      for (const auto& k : result.report.failedServices) {
        if (!desired.table.services.count(k)) inUse.insert(k.address);
      }
      for (auto* v : {&toUnbind, &toUnbindOther}) std::erase_if(*v, [&](const auto& a) { return inUse.count(a) > 0; });
    }
    record(opts.vipMode, false, change(opts.vipMode, false, toUnbind), toUnbind, result.hostChanges, result.hostErrors);
    record(otherMode, false, change(otherMode, false, toUnbindOther), toUnbindOther, result.hostChanges,
           result.hostErrors);

    // Drain: poll only the services with draining real servers, re-plan them, until they empty.
    std::set<ServiceKey> draining = drainingKeys(result.plan);
    result.stillDraining = result.plan.drainingCount();
    if (opts.drain == DrainMode::kWait && !draining.empty()) {
      auto waited = std::chrono::milliseconds(0);
      while (!draining.empty() && waited < opts.drainTimeout) {
        sleep(opts.drainPoll);
        waited += opts.drainPoll;
        if (!firstSeen) firstSeen = actual;
        if (Status s = refresh(client, draining, actual); !s.isOk()) {
          result.hostErrors.push_back(s.withContext("re-reading draining services"));
          break;
        }
        std::vector<ServiceKey> keys(draining.begin(), draining.end());
        Plan p = planKeys(desired.table, actual, own, keys);
        // Each poll's outcome replaces the last one's: a refusal met on every
        // poll is one failure, one that cleared up is none.
        supersede(result.report, result.plannedWrites, draining, apply(p, client), p.opCount());
        draining = drainingKeys(p);
        result.stillDraining = p.drainingCount();
        if (opts.output == OutputFormat::kText && draining.empty()) {
          out << "drained: removed the last departing real servers after " << waited.count() / 1000.0 << "s\n";
        }
      }
    }
  }

  result.hostErrors.insert(result.hostErrors.end(), recordErrors.begin(), recordErrors.end());
  result.hostChanges.insert(result.hostChanges.end(), recordChanges.begin(), recordChanges.end());
  result.kernelWrites = client.writeCount() - writesBefore;
  for (const auto& f : result.report.failures) {
    err << "error: " << f.op.toString() << ": " << f.status.toString() << "\n";
  }
  for (const auto& [s, n] : result.report.skippedDests) {
    err << "error: " << s.toString() << ": real-server changes skipped because the virtual server op failed (" << n
        << ")\n";
  }
  for (const auto& h : result.hostErrors) err << "error: " << h.toString() << "\n";

  if (opts.output == OutputFormat::kJson) {
    out << (summaryAhead.rendered ? summaryAhead.json : vipModeAndBindJson());
    out << listJson("unbind", {&toUnbind, &toUnbindOther}) << listJson("convert", {&toConvert});
    out << ",\"errors\":[";
    bool first = true;
    auto errJson = [&](const std::string& kind, const std::string& name, const std::string& msg, int errnum) {
      out << (first ? "" : ",") << "{\"kind\":\"" << jsonEscape(kind) << "\",\"name\":\"" << jsonEscape(name)
          << "\",\"message\":\"" << jsonEscape(msg) << "\"";
      if (errnum) out << ",\"errno\":\"" << errnoLabel(errnum) << "\"";
      out << "}";
      first = false;
    };
    for (const auto& e : result.objectErrors) errJson(e.kind, e.name, e.message, 0);
    for (const auto& f : result.report.failures) errJson("Op", f.op.toString(), f.status.toString(), f.status.errnum());
    for (const auto& [s, n] : result.report.skippedDests) {
      errJson("Op", s.toString(), "real-server changes skipped because the virtual server op failed", 0);
    }
    for (const auto& h : result.hostErrors) errJson("Host", "", h.toString(), h.errnum());
    out << "],\"applied\":{\"attempted\":" << result.report.attempted << ",\"succeeded\":" << result.report.succeeded
        << ",\"failed\":" << result.report.failures.size() << "},\"kernelWrites\":" << result.kernelWrites
        << ",\"stillDraining\":" << result.stillDraining
        << ",\"exitCode\":" << result.exitCode() << "}\n";
  } else {
    if (opts.dryRun) {
      out << "dry run: nothing was changed\n";
    } else {
      out << "Applied " << result.report.succeeded << " of " << result.plannedWrites << " planned writes ("
          << result.kernelWrites << " kernel write requests sent, " << result.report.failures.size() << " failed)";
      if (!result.hostChanges.empty()) out << "; host: " << result.hostChanges.size() << " changes";
      out << "\n";
      out << summaryAhead.text << hostLines(result.hostChanges, summaryAhead.textChanges);
      if (result.stillDraining) {
        out << result.stillDraining
            << " real servers left at weight 0 with open connections; a later reconcile removes them once drained"
            << (opts.drain == DrainMode::kSkip ? " (--drain=wait waits here)" : " (drain timeout reached)") << "\n";
      }
    }
    if (!result.objectErrors.empty()) {
      out << result.objectErrors.size() << " objects skipped with errors (see stderr)\n";
    }
  }
  result.desired = std::move(desired);
  result.observed = firstSeen ? std::move(*firstSeen) : std::move(actual);
  return result;
}

}  // namespace kipvs::controller
