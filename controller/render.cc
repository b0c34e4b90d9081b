#include "controller/render.h"

#include <arpa/inet.h>

#include <cstdio>
#include <sstream>

namespace kipvs::controller {

using ipvs::DestKey;
using ipvs::DestSpec;
using ipvs::FwdMethod;
using ipvs::Op;
using ipvs::ServiceKey;
using ipvs::ServiceSpec;
using ipvs::ServiceState;

std::string jsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

namespace {

std::string q(const std::string& s) { return "\"" + jsonEscape(s) + "\""; }

// ipvsadm's virtual-service argument.
std::string ipvsadmService(const ServiceKey& k) {
  if (k.isFwmark()) return "-f " + std::to_string(k.fwmark) + (k.family == ipvs::Family::kV6 ? " -6" : "");
  const char* flag = k.protocol == ipvs::Protocol::kTcp ? "-t" : k.protocol == ipvs::Protocol::kUdp ? "-u" : "--sctp-service";
  return std::string(flag) + " " + k.address.toBracketed() + ":" + std::to_string(k.port);
}

std::string v4Mask(uint32_t hostOrder) {
  in_addr a;
  a.s_addr = htonl(hostOrder);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

std::string schedFlags(const ServiceSpec& s) {
  std::string out;
  const bool mh = s.scheduler == "mh";
  auto add = [&](const char* n) { out += (out.empty() ? "" : ",") + std::string(n); };
  if (s.flags & ipvs::kSvcFlagSched1) add(mh ? "mh-fallback" : s.scheduler == "sh" ? "sh-fallback" : "flag-1");
  if (s.flags & ipvs::kSvcFlagSched2) add(mh ? "mh-port" : s.scheduler == "sh" ? "sh-port" : "flag-2");
  if (s.flags & ipvs::kSvcFlagSched3) add("flag-3");
  return out;
}

const char* fwdSwitch(FwdMethod m) {
  switch (m) {
    case FwdMethod::kMasq:
      return "-m";
    case FwdMethod::kTunnel:
      return "-i";
    default:
      return "-g";  // route and local both print as gatewaying
  }
}

const char* tunTypeName(ipvs::TunnelType t) {
  switch (t) {
    case ipvs::TunnelType::kIpip:
      return "ipip";
    case ipvs::TunnelType::kGue:
      return "gue";
    case ipvs::TunnelType::kGre:
      return "gre";
  }
  return "?";
}

const char* tunCsumOpt(uint16_t flags) {
  if (flags & ipvs::kTunFlagRemCsum) return "--tun-remcsum";
  if (flags & ipvs::kTunFlagCsum) return "--tun-csum";
  return "--tun-nocsum";
}

std::string serviceLine(const ServiceKey& k, const ServiceSpec& s) {
  std::string line = "-A " + ipvsadmService(k) + " -s " + s.scheduler;
  if (s.flags & ipvs::kSvcFlagPersistent) {
    line += " -p " + std::to_string(s.timeout);
    if (k.family == ipvs::Family::kV4 && s.netmask != 0xffffffffu) line += " -M " + v4Mask(s.netmask);
    if (k.family == ipvs::Family::kV6 && s.netmask != 128) line += " -M " + std::to_string(s.netmask);
  }
  if (!s.pe.empty()) line += " --pe " + s.pe;
  if (s.flags & ipvs::kSvcFlagOnePacket) line += " -o";
  std::string f = schedFlags(s);
  if (!f.empty()) line += " -b " + f;
  return line;
}

// Appends one real-server rule; `svc` is ipvsadmService(k), computed once per service.
void appendDestLine(const std::string& svc, const DestKey& d, const DestSpec& s, std::string& out) {
  out += "-a ";
  out += svc;
  out += " -r ";
  out += d.address.toBracketed();
  out += ':';
  out += std::to_string(d.port);
  out += ' ';
  out += fwdSwitch(s.fwd);
  out += " -w ";
  out += std::to_string(s.weight);
  if (s.upperThreshold) out += " -x " + std::to_string(s.upperThreshold);
  if (s.lowerThreshold) out += " -y " + std::to_string(s.lowerThreshold);
  if (s.fwd == FwdMethod::kTunnel) {
    out += std::string(" --tun-type ") + tunTypeName(s.tunType);
    if (s.tunType == ipvs::TunnelType::kGue) out += " --tun-port " + std::to_string(s.tunPort);
    if (s.tunType != ipvs::TunnelType::kIpip) out += std::string(" ") + tunCsumOpt(s.tunFlags);
  }
  out += '\n';
}

}  // namespace

void renderIpvsadmRules(const ipvs::Table& table, std::ostream& out) {
  // Lines go into a buffer written out every 256 KiB: few stream calls, and
  // memory stays flat however large the table.
  constexpr size_t kFlushAt = 256 << 10;
  std::string buf;
  buf.reserve(kFlushAt + 4096);
  for (const auto& [k, s] : table.services) {
    buf += serviceLine(k, s.spec);
    buf += '\n';
    const std::string svc = ipvsadmService(k);
    for (const auto& [dk, d] : s.dests) {
      appendDestLine(svc, dk, d.spec, buf);
      if (buf.size() >= kFlushAt) {
        out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
        buf.clear();
      }
    }
  }
  out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
}

void renderTableText(const ipvs::Table& table, std::ostream& out) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-40s %-10s %-9s\n  %-38s %-7s %6s %10s %10s %7s\n", "Prot LocalAddress:Port",
                "Scheduler", "Flags", "-> RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "Share");
  out << buf;
  for (const auto& [k, s] : table.services) {
    std::string flags;
    if (s.spec.flags & ipvs::kSvcFlagPersistent) flags += "persistent " + std::to_string(s.spec.timeout);
    if (s.spec.flags & ipvs::kSvcFlagOnePacket) flags += std::string(flags.empty() ? "" : " ") + "ops";
    std::string sf = schedFlags(s.spec);
    if (!sf.empty()) flags += std::string(flags.empty() ? "" : " ") + sf;
    std::snprintf(buf, sizeof(buf), "%-40s %-10s %s\n", k.toString().c_str(), s.spec.scheduler.c_str(), flags.c_str());
    out << buf;
    uint64_t total = 0;
    for (const auto& [dk, d] : s.dests) total += d.counters.activeConns + d.counters.inactiveConns;
    for (const auto& [dk, d] : s.dests) {
      const uint64_t mine = d.counters.activeConns + d.counters.inactiveConns;
      std::string share = total ? std::to_string((mine * 1000 / total + 5) / 10) + "%" : "-";
      std::snprintf(buf, sizeof(buf), "  -> %-35s %-7s %6d %10u %10u %7s\n", dk.toString().c_str(),
                    ipvs::fwdMethodName(d.spec.fwd), d.spec.weight, d.counters.activeConns, d.counters.inactiveConns,
                    share.c_str());
      out << buf;
    }
  }
}

namespace {

void statsJson(const ipvs::Stats& s, std::ostream& out) {
  out << "{\"conns\":" << s.conns << ",\"inPkts\":" << s.inPkts << ",\"outPkts\":" << s.outPkts
      << ",\"inBytes\":" << s.inBytes << ",\"outBytes\":" << s.outBytes << ",\"cps\":" << s.cps
      << ",\"inPps\":" << s.inPps << ",\"outPps\":" << s.outPps << ",\"inBps\":" << s.inBps
      << ",\"outBps\":" << s.outBps << "}";
}

void keyJson(const ServiceKey& k, std::ostream& out) {
  out << "{\"family\":" << (k.family == ipvs::Family::kV4 ? "\"IPv4\"" : "\"IPv6\"");
  if (k.isFwmark()) {
    out << ",\"fwmark\":" << k.fwmark;
  } else {
    out << ",\"protocol\":" << q(ipvs::protocolName(k.protocol)) << ",\"address\":" << q(k.address.toString())
        << ",\"port\":" << k.port;
  }
  out << "}";
}

void serviceSpecJson(const ServiceKey& k, const ServiceSpec& s, std::ostream& out) {
  out << "{\"scheduler\":" << q(s.scheduler) << ",\"flags\":" << s.flags
      << ",\"persistent\":" << ((s.flags & ipvs::kSvcFlagPersistent) ? "true" : "false") << ",\"timeout\":" << s.timeout
      << ",\"netmask\":" << q(k.family == ipvs::Family::kV4 ? v4Mask(s.netmask) : std::to_string(s.netmask));
  if (!s.pe.empty()) out << ",\"pe\":" << q(s.pe);
  std::string f = schedFlags(s);
  if (!f.empty()) out << ",\"schedFlags\":" << q(f);
  out << "}";
}

void destSpecJson(const DestSpec& d, std::ostream& out) {
  out << "{\"forward\":" << q(ipvs::fwdMethodName(d.fwd)) << ",\"weight\":" << d.weight
      << ",\"upperThreshold\":" << d.upperThreshold << ",\"lowerThreshold\":" << d.lowerThreshold;
  if (d.fwd == FwdMethod::kTunnel) {
    out << ",\"tunnelType\":" << q(tunTypeName(d.tunType)) << ",\"tunnelPort\":" << d.tunPort
        << ",\"tunnelFlags\":" << d.tunFlags;
  }
  out << "}";
}

}  // namespace

void renderTableJson(const ipvs::Table& table, std::ostream& out) {
  out << "{\"services\":[";
  bool firstS = true;
  for (const auto& [k, s] : table.services) {
    out << (firstS ? "" : ",") << "\n {\"key\":";
    firstS = false;
    keyJson(k, out);
    out << ",\"name\":" << q(k.toString()) << ",\"spec\":";
    serviceSpecJson(k, s.spec, out);
    out << ",\"stats\":";
    statsJson(s.stats, out);
    out << ",\"dests\":[";
    bool firstD = true;
    for (const auto& [dk, d] : s.dests) {
      out << (firstD ? "" : ",") << "\n  {\"address\":" << q(dk.address.toString()) << ",\"port\":" << dk.port
          << ",\"spec\":";
      firstD = false;
      destSpecJson(d.spec, out);
      out << ",\"activeConns\":" << d.counters.activeConns << ",\"inactiveConns\":" << d.counters.inactiveConns
          << ",\"persistentConns\":" << d.counters.persistentConns << ",\"stats\":";
      statsJson(d.counters.stats, out);
      out << "}";
    }
    out << "]}";
  }
  out << "\n]}\n";
}

namespace {

const ServiceState* lookup(const ipvs::Table* t, const ServiceKey& k) {
  if (!t) return nullptr;
  auto it = t->services.find(k);
  return it == t->services.end() ? nullptr : &it->second;
}

std::string originText(const PlanContext& ctx, const ServiceKey& k) {
  if (!ctx.desired) return "";
  auto it = ctx.desired->origins.find(k);
  if (it == ctx.desired->origins.end()) return "";
  const VsOrigin& o = it->second;
  return "(" + o.service + (o.portName.empty() ? "" : ":" + o.portName) + " " + o.kind + ")";
}

// A service rule without its "-A -t VIP:PORT" head: "-s rr -p 60".
std::string specText(const ServiceKey& k, const ServiceSpec& s) {
  std::string line = serviceLine(k, s);
  return line.substr(line.find(" -s ") + 1);
}

std::string opLine(const Op& op, const ServiceState* have) {
  switch (op.kind) {
    case Op::Kind::kAddService:
      return "  + service " + op.service.toString() + " " + specText(op.service, op.serviceSpec);
    case Op::Kind::kUpdateService:
      return "  ~ service " + op.service.toString() + " " +
             (have ? specText(op.service, have->spec) + " => " : "") + specText(op.service, op.serviceSpec);
    case Op::Kind::kDeleteService:
      return "  - service " + op.service.toString();
    case Op::Kind::kAddDest:
      return "      + " + op.dest.toString() + " " + ipvs::fwdMethodName(op.destSpec.fwd) + " weight " +
             std::to_string(op.destSpec.weight);
    case Op::Kind::kUpdateDest: {
      std::string from;
      if (have) {
        auto it = have->dests.find(op.dest);
        if (it != have->dests.end()) from = "weight " + std::to_string(it->second.spec.weight) + " => ";
      }
      return "      ~ " + op.dest.toString() + " " + ipvs::fwdMethodName(op.destSpec.fwd) + " " + from + "weight " +
             std::to_string(op.destSpec.weight);
    }
    case Op::Kind::kDeleteDest:
      return "      - " + op.dest.toString();
  }
  return "";
}

}  // namespace

void renderPlanText(const Plan& plan, const PlanContext& ctx, std::ostream& out) {
  size_t creates = 0, updates = 0, deletes = 0, destOps = 0;
  for (const auto& sp : plan.services) {
    for (const auto& op : sp.ops) {
      if (op.kind == Op::Kind::kAddService) ++creates;
      if (op.kind == Op::Kind::kUpdateService) ++updates;
      if (op.kind == Op::Kind::kDeleteService) ++deletes;
      if (!op.isServiceOp()) ++destOps;
    }
  }
  out << "Plan: " << creates << " virtual servers to add, " << updates << " to update, " << deletes
      << " to delete; " << destOps << " real-server changes; " << plan.opCount() << " kernel writes";
  if (plan.drainingCount()) out << "; " << plan.drainingCount() << " real servers draining";
  out << "\n";
  for (const auto& sp : plan.services) {
    const ServiceState* have = lookup(ctx.actual, sp.key);
    std::string origin = originText(ctx, sp.key);
    if (!sp.ops.empty() && sp.ops.front().isServiceOp()) {
      out << opLine(sp.ops.front(), have) << (origin.empty() ? "" : "  " + origin) << "\n";
    } else {
      out << "  = service " << sp.key.toString() << (origin.empty() ? "" : "  " + origin) << "\n";
    }
    for (const auto& op : sp.ops) {
      if (!op.isServiceOp()) out << opLine(op, have) << "\n";
    }
    for (const auto& d : sp.draining) {
      out << "      ~ " << d.dest.toString() << " draining at weight 0: " << d.activeConns << " active, "
          << d.inactiveConns << " inactive connections\n";
    }
  }
  for (const auto& k : plan.leftAlone) out << "  . left alone " << k.toString() << " (not owned by kipvs)\n";
  if (ctx.desired) {
    for (const auto& n : ctx.desired->notes) out << "note: " << n << "\n";
  }
}

void renderPlanJson(const Plan& plan, const PlanContext& ctx, std::ostream& out) {
  out << "{\"writes\":" << plan.opCount() << ",\"draining\":" << plan.drainingCount() << ",\"services\":[";
  bool first = true;
  for (const auto& sp : plan.services) {
    out << (first ? "" : ",") << "\n {\"service\":" << q(sp.key.toString()) << ",\"key\":";
    first = false;
    keyJson(sp.key, out);
    static const char* actions[] = {"create", "update", "dests", "delete"};
    out << ",\"action\":\"" << actions[static_cast<int>(sp.action)] << "\"";
    if (ctx.desired) {
      auto it = ctx.desired->origins.find(sp.key);
      if (it != ctx.desired->origins.end()) {
        out << ",\"origin\":{\"service\":" << q(it->second.service) << ",\"port\":" << q(it->second.portName)
            << ",\"kind\":" << q(it->second.kind) << "}";
      }
    }
    out << ",\"ops\":[";
    bool firstOp = true;
    for (const auto& op : sp.ops) {
      out << (firstOp ? "" : ",") << "{\"op\":\"" << ipvs::opKindName(op.kind) << "\"";
      firstOp = false;
      if (op.kind == Op::Kind::kAddService || op.kind == Op::Kind::kUpdateService) {
        out << ",\"spec\":";
        serviceSpecJson(op.service, op.serviceSpec, out);
      }
      if (!op.isServiceOp()) {
        out << ",\"dest\":" << q(op.dest.toString());
        if (op.kind != Op::Kind::kDeleteDest) {
          out << ",\"spec\":";
          destSpecJson(op.destSpec, out);
        }
      }
      out << "}";
    }
    out << "],\"draining\":[";
    bool firstD = true;
    for (const auto& d : sp.draining) {
      out << (firstD ? "" : ",") << "{\"dest\":" << q(d.dest.toString()) << ",\"activeConns\":" << d.activeConns
          << ",\"inactiveConns\":" << d.inactiveConns << "}";
      firstD = false;
    }
    out << "]}";
  }
  out << "\n],\"leftAlone\":[";
  for (size_t i = 0; i < plan.leftAlone.size(); ++i) out << (i ? "," : "") << q(plan.leftAlone[i].toString());
  out << "],\"notes\":[";
  if (ctx.desired) {
    for (size_t i = 0; i < ctx.desired->notes.size(); ++i) out << (i ? "," : "") << q(ctx.desired->notes[i]);
  }
  out << "]}\n";
}

}  // namespace kipvs::controller
