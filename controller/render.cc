#include "controller/render.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

namespace kipvs::controller {

using ipvs::Address;
using ipvs::DestKey;
using ipvs::DestSpec;
using ipvs::FwdMethod;
using ipvs::Op;
using ipvs::ServiceKey;
using ipvs::ServiceSpec;
using ipvs::ServiceState;

namespace {

// The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0.
size_t utf8SequenceLength(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i) {
    if ((p[i] & 0xc0) != 0x80) return 0;
  }
  return len;
}

// Appends s with JSON escapes to `out` (a std::string or a Writer). Runs of
// bytes that need none (almost all of them) are copied whole. Bytes that are
// not UTF-8 (the input is not checked for it) become U+FFFD, as Go's encoder
// writes them, so that the output stays JSON.
template <typename Out>
void appendJsonEscaped(std::string_view s, Out& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') continue;
    if (c >= 0x80) {
      const size_t len = utf8SequenceLength(reinterpret_cast<const unsigned char*>(s.data()) + i, s.size() - i);
      if (len != 0) {
        i += len - 1;
        continue;
      }
      out.append(s.data() + run, i - run);
      run = i + 1;
      out.append("\\ufffd", 6);
      continue;
    }
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out.append("\\\"", 2);
        break;
      case '\\':
        out.append("\\\\", 2);
        break;
      case '\n':
        out.append("\\n", 2);
        break;
      case '\t':
        out.append("\\t", 2);
        break;
      default: {
        const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.append(u, sizeof(u));
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
}

// A string the Writer quotes and escapes for JSON.
struct Json {
  std::string_view text;
};

// An address as in host:port: "10.0.0.1", "[fd00::1]".
struct Bracketed {
  const Address& address;
};

// Output goes into one buffer handed to the stream every 256 KiB: few stream
// calls, no temporary string per value, and memory stays flat however large
// the output. The buffer is sized ahead and filled with memcpy, so appending
// a literal compiles to a few moves rather than a call per piece. Call
// breakPoint() between records; the destructor writes the rest.
class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out), buf_(kFlushAt + 4096) {}
  ~Writer() { flush(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void append(const char* p, size_t n) {
    std::memcpy(room(n), p, n);
    len_ += n;
  }
  Writer& operator<<(std::string_view s) {
    append(s.data(), s.size());
    return *this;
  }
  Writer& operator<<(char c) {
    *room(1) = c;
    ++len_;
    return *this;
  }
  template <std::integral T>
    requires(!std::same_as<T, bool> && !std::same_as<T, char>)
  Writer& operator<<(T v) {
    constexpr size_t kMax = 24;  // a 64-bit integer with its sign
    char* p = room(kMax);
    len_ = std::to_chars(p, p + kMax, v).ptr - buf_.data();
    return *this;
  }

  Writer& operator<<(Json j) {
    *this << '"';
    appendJsonEscaped(j.text, *this);
    return *this << '"';
  }
  // The toString() forms, without the temporaries: "10.0.0.1", "fd00::1";
  // "TCP 10.0.0.1:80", "FWM 5 IPv4"; "10.0.1.1:8080", "[fd00::1]:8080".
  Writer& operator<<(const Address& a);
  Writer& operator<<(const ServiceKey& k) {
    if (k.isFwmark()) return *this << "FWM " << k.fwmark << (k.family == ipvs::Family::kV4 ? " IPv4" : " IPv6");
    if (!ipvs::isKnownProtocol(k.protocol)) *this << ipvs::protocolLabel(k.protocol);
    else *this << ipvs::protocolName(k.protocol);
    return *this << ' ' << Bracketed{k.address} << ':' << k.port;
  }
  Writer& operator<<(const DestKey& d) { return *this << Bracketed{d.address} << ':' << d.port; }
  Writer& operator<<(Bracketed b) {
    if (b.address.isV4()) return *this << b.address;
    return *this << '[' << b.address << ']';
  }

  // printf's %-Ns: what was written since mark(), padded to `width`.
  size_t mark() const { return len_; }
  std::string_view since(size_t mark) const { return std::string_view(buf_.data() + mark, len_ - mark); }
  Writer& padTo(size_t mark, size_t width) { return pad(width - std::min(width, len_ - mark)); }
  // printf's %Ns and %Nd.
  Writer& right(std::string_view s, size_t width) { return pad(width - std::min(width, s.size())) << s; }
  template <std::integral T>
  Writer& right(T v, size_t width) {
    char b[24];
    return right(std::string_view(b, std::to_chars(b, b + sizeof(b), v).ptr), width);
  }

  void breakPoint() {
    if (len_ >= kFlushAt) flush();
  }
  void flush() {
    out_.write(buf_.data(), static_cast<std::streamsize>(len_));
    len_ = 0;
  }

 private:
  static constexpr size_t kFlushAt = 256 << 10;

  // Where the next n bytes go. Inlined everywhere, so the rare growth (an
  // outsized record) stays out of line.
  [[gnu::always_inline]] char* room(size_t n) {
    if (buf_.size() - len_ < n) [[unlikely]] grow(n);
    return buf_.data() + len_;
  }
  [[gnu::noinline]] void grow(size_t n) { buf_.resize(std::max(buf_.size() * 2, len_ + n)); }
  Writer& pad(size_t n) {
    std::memset(room(n), ' ', n);
    len_ += n;
    return *this;
  }

  std::ostream& out_;
  std::vector<char> buf_;
  size_t len_ = 0;  // bytes of buf_ in use
};

Writer& Writer::operator<<(const Address& a) {
  if (!a.isV4()) {
    char b[INET6_ADDRSTRLEN];
    const char* r = inet_ntop(AF_INET6, a.bytes.data(), b, sizeof(b));
    return *this << (r ? std::string_view(r) : std::string_view("?"));
  }
  // Hand-rolled dotted quad: the hot path of every plan and table listing.
  char* const start = room(15);
  char* p = start;
  for (int i = 0; i < 4; ++i) {
    if (i) *p++ = '.';
    unsigned v = a.bytes[i];
    if (v >= 100) {
      *p++ = static_cast<char>('0' + v / 100);
      v %= 100;
      *p++ = static_cast<char>('0' + v / 10);
    } else if (v >= 10) {
      *p++ = static_cast<char>('0' + v / 10);
    }
    *p++ = static_cast<char>('0' + v % 10);
  }
  len_ += p - start;
  return *this;
}

}  // namespace

void renderFatalJson(const Status& fatal, bool dryRun, std::ostream& out) {
  out << "{\"dryRun\":" << (dryRun ? "true" : "false") << ",\"fatal\":{\"message\":\""
      << jsonEscape(fatal.message()) << "\"";
  if (fatal.errnum()) out << ",\"errno\":\"" << errnoLabel(fatal.errnum()) << "\"";
  out << "},\"exitCode\":2}\n";
}

std::string jsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  appendJsonEscaped(s, out);
  return out;
}

namespace {

// ipvsadm's virtual-service argument.
void ipvsadmService(const ServiceKey& k, Writer& w) {
  if (k.isFwmark()) {
    w << "-f " << k.fwmark << (k.family == ipvs::Family::kV6 ? " -6" : "");
    return;
  }
  const auto p = k.protocol;
  w << (p == ipvs::Protocol::kTcp ? "-t " : p == ipvs::Protocol::kUdp ? "-u " : "--sctp-service ");
  w << Bracketed{k.address} << ':' << k.port;
}

// The persistence netmask: dotted for IPv4, a prefix length for IPv6.
void netmask(const ServiceKey& k, const ServiceSpec& s, Writer& w) {
  if (k.family == ipvs::Family::kV4) {
    w << Address::v4(s.netmask);
  } else {
    w << s.netmask;
  }
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

// A service rule without its "-A -t VIP:PORT" head: "-s rr -p 60".
void specArgs(const ServiceKey& k, const ServiceSpec& s, Writer& w) {
  w << "-s " << s.scheduler;
  if (s.flags & ipvs::kSvcFlagPersistent) {
    w << " -p " << s.timeout;
    if (k.family == ipvs::Family::kV4 && s.netmask != 0xffffffffu) w << " -M " << Address::v4(s.netmask);
    if (k.family == ipvs::Family::kV6 && s.netmask != 128) w << " -M " << s.netmask;
  }
  if (!s.pe.empty()) w << " --pe " << s.pe;
  if (s.flags & ipvs::kSvcFlagOnePacket) w << " -o";
  std::string f = schedFlags(s);
  if (!f.empty()) w << " -b " << f;
}

// One real-server rule; `svc` is the service's ipvsadm argument, written once per service.
void destLine(std::string_view svc, const DestKey& d, const DestSpec& s, Writer& w) {
  w << "-a " << svc << " -r " << d << ' ' << fwdSwitch(s.fwd) << " -w " << s.weight;
  if (s.upperThreshold) w << " -x " << s.upperThreshold;
  if (s.lowerThreshold) w << " -y " << s.lowerThreshold;
  if (s.fwd == FwdMethod::kTunnel) {
    w << " --tun-type " << tunTypeName(s.tunType);
    if (s.tunType == ipvs::TunnelType::kGue) w << " --tun-port " << s.tunPort;
    if (s.tunType != ipvs::TunnelType::kIpip) w << ' ' << tunCsumOpt(s.tunFlags);
  }
  w << '\n';
}

}  // namespace

std::vector<ServiceKey> renderIpvsadmRules(const ipvs::Table& table, std::ostream& out) {
  Writer w(out);
  std::string svc;
  std::vector<ServiceKey> leftOut;
  for (const auto& [k, s] : table.services) {
    if (!k.isFwmark() && !ipvs::isKnownProtocol(k.protocol)) {
      leftOut.push_back(k);  // ipvsadm has no switch for it
      continue;
    }
    w << "-A ";
    // Written once, then copied into each real server's line.
    const size_t at = w.mark();
    ipvsadmService(k, w);
    svc.assign(w.since(at));
    w << ' ';
    specArgs(k, s.spec, w);
    w << '\n';
    for (const auto& [dk, d] : s.dests) {
      destLine(svc, dk, d.spec, w);
      w.breakPoint();
    }
    w.breakPoint();
  }
  return leftOut;
}

void renderTableText(const ipvs::Table& table, std::ostream& out) {
  Writer w(out);
  char head[256];
  std::snprintf(head, sizeof(head), "%-40s %-10s %-9s\n  %-38s %-7s %6s %10s %10s %7s\n", "Prot LocalAddress:Port",
                "Scheduler", "Flags", "-> RemoteAddress:Port", "Forward", "Weight", "ActiveConn", "InActConn", "Share");
  w << head;
  for (const auto& [k, s] : table.services) {
    size_t at = w.mark();
    w << k;
    w.padTo(at, 40) << ' ';
    at = w.mark();
    w << s.spec.scheduler;
    w.padTo(at, 10) << ' ';
    bool any = false;
    if (s.spec.flags & ipvs::kSvcFlagPersistent) {
      w << "persistent " << s.spec.timeout;
      any = true;
    }
    if (s.spec.flags & ipvs::kSvcFlagOnePacket) {
      w << (any ? " " : "") << "ops";
      any = true;
    }
    std::string sf = schedFlags(s.spec);
    if (!sf.empty()) w << (any ? " " : "") << sf;
    w << '\n';
    uint64_t total = 0;
    for (const auto& [dk, d] : s.dests) total += d.counters.activeConns + d.counters.inactiveConns;
    for (const auto& [dk, d] : s.dests) {
      w << "  -> ";
      at = w.mark();
      w << dk;
      w.padTo(at, 35) << ' ';
      at = w.mark();
      w << ipvs::fwdMethodName(d.spec.fwd);
      w.padTo(at, 7) << ' ';
      w.right(d.spec.weight, 6) << ' ';
      w.right(d.counters.activeConns, 10) << ' ';
      w.right(d.counters.inactiveConns, 10) << ' ';
      const uint64_t mine = d.counters.activeConns + d.counters.inactiveConns;
      if (total) {
        char b[24];
        char* p = std::to_chars(b, b + sizeof(b) - 1, (mine * 1000 / total + 5) / 10).ptr;
        *p++ = '%';
        w.right(std::string_view(b, p - b), 7);
      } else {
        w.right("-", 7);
      }
      w << '\n';
      w.breakPoint();
    }
  }
}

namespace {

void statsJson(const ipvs::Stats& s, Writer& w) {
  w << "{\"conns\":" << s.conns << ",\"inPkts\":" << s.inPkts << ",\"outPkts\":" << s.outPkts
    << ",\"inBytes\":" << s.inBytes << ",\"outBytes\":" << s.outBytes << ",\"cps\":" << s.cps
    << ",\"inPps\":" << s.inPps << ",\"outPps\":" << s.outPps << ",\"inBps\":" << s.inBps << ",\"outBps\":" << s.outBps
    << '}';
}

void keyJson(const ServiceKey& k, Writer& w) {
  w << "{\"family\":" << (k.family == ipvs::Family::kV4 ? "\"IPv4\"" : "\"IPv6\"");
  if (k.isFwmark()) {
    w << ",\"fwmark\":" << k.fwmark;
  } else {
    w << ",\"protocol\":\"";
    if (ipvs::isKnownProtocol(k.protocol)) w << ipvs::protocolName(k.protocol);
    else w << ipvs::protocolLabel(k.protocol);
    w << "\",\"address\":\"" << k.address
      << "\",\"port\":" << k.port;
  }
  w << '}';
}

void serviceSpecJson(const ServiceKey& k, const ServiceSpec& s, Writer& w) {
  w << "{\"scheduler\":" << Json{s.scheduler} << ",\"flags\":" << s.flags
    << ",\"persistent\":" << ((s.flags & ipvs::kSvcFlagPersistent) ? "true" : "false") << ",\"timeout\":" << s.timeout
    << ",\"netmask\":\"";
  netmask(k, s, w);
  w << '"';
  if (!s.pe.empty()) w << ",\"pe\":" << Json{s.pe};
  std::string f = schedFlags(s);
  if (!f.empty()) w << ",\"schedFlags\":\"" << f << '"';
  w << '}';
}

void destSpecJson(const DestSpec& d, Writer& w) {
  w << "{\"forward\":\"" << ipvs::fwdMethodName(d.fwd) << "\",\"weight\":" << d.weight
    << ",\"upperThreshold\":" << d.upperThreshold << ",\"lowerThreshold\":" << d.lowerThreshold;
  if (d.fwd == FwdMethod::kTunnel) {
    w << ",\"tunnelType\":\"" << tunTypeName(d.tunType) << "\",\"tunnelPort\":" << d.tunPort
      << ",\"tunnelFlags\":" << d.tunFlags;
  }
  w << '}';
}

}  // namespace

void renderTableJson(const ipvs::Table& table, std::ostream& out) {
  Writer w(out);
  w << "{\"services\":[";
  bool firstS = true;
  for (const auto& [k, s] : table.services) {
    w << (firstS ? "" : ",") << "\n {\"key\":";
    firstS = false;
    keyJson(k, w);
    w << ",\"name\":\"" << k << "\",\"spec\":";
    serviceSpecJson(k, s.spec, w);
    w << ",\"stats\":";
    statsJson(s.stats, w);
    w << ",\"dests\":[";
    bool firstD = true;
    for (const auto& [dk, d] : s.dests) {
      w << (firstD ? "" : ",") << "\n  {\"address\":\"" << dk.address << "\",\"port\":" << dk.port
        << ",\"spec\":";
      firstD = false;
      destSpecJson(d.spec, w);
      w << ",\"activeConns\":" << d.counters.activeConns << ",\"inactiveConns\":" << d.counters.inactiveConns
        << ",\"persistentConns\":" << d.counters.persistentConns << ",\"stats\":";
      statsJson(d.counters.stats, w);
      w << '}';
      w.breakPoint();
    }
    w << "]}";
  }
  w << "\n]}\n";
}

namespace {

// Looks up a plan's services, which come in key order: each is usually the
// entry after the previous one, so try that before searching the map.
template <typename Map>
class OrderedLookup {
 public:
  explicit OrderedLookup(const Map* map) : map_(map) {
    if (map_) next_ = map_->begin();
  }
  const typename Map::mapped_type* find(const typename Map::key_type& key) {
    if (!map_) return nullptr;
    auto it = next_ != map_->end() && next_->first == key ? next_ : map_->find(key);
    if (it == map_->end()) return nullptr;
    next_ = std::next(it);
    return &it->second;
  }

 private:
  const Map* map_;
  typename Map::const_iterator next_;
};

using ServiceLookup = OrderedLookup<std::map<ServiceKey, ServiceState>>;
using OriginLookup = OrderedLookup<std::map<ServiceKey, VsOrigin>>;

// "  (namespace/name:port Kind)" after a service line, if known.
void originText(const VsOrigin* o, Writer& w) {
  if (!o) return;
  w << "  (" << o->service;
  if (!o->portName.empty()) w << ':' << o->portName;
  w << ' ' << o->kind << ')';
}

void opLine(const Op& op, const ServiceState* have, Writer& w) {
  switch (op.kind) {
    case Op::Kind::kAddService:
      w << "  + service " << op.service << ' ';
      specArgs(op.service, op.serviceSpec, w);
      return;
    case Op::Kind::kUpdateService:
      w << "  ~ service " << op.service << ' ';
      if (have) {
        specArgs(op.service, have->spec, w);
        w << " => ";
      }
      specArgs(op.service, op.serviceSpec, w);
      return;
    case Op::Kind::kDeleteService:
      w << "  - service " << op.service;
      return;
    case Op::Kind::kAddDest:
      w << "      + " << op.dest << ' ' << ipvs::fwdMethodName(op.destSpec.fwd) << " weight "
        << op.destSpec.weight;
      return;
    case Op::Kind::kUpdateDest: {
      // Every field that changes, old => new: the weight always; the forwarding
      // method, thresholds and tunnel settings when they differ (set by hand).
      const DestSpec& to = op.destSpec;
      const DestSpec* from = nullptr;
      if (have) {
        auto it = have->dests.find(op.dest);
        if (it != have->dests.end()) from = &it->second.spec;
      }
      w << "      ~ " << op.dest << ' ';
      if (from && from->fwd != to.fwd) w << ipvs::fwdMethodName(from->fwd) << " => ";
      w << ipvs::fwdMethodName(to.fwd) << ' ';
      if (from) w << "weight " << from->weight << " => ";
      w << "weight " << to.weight;
      if (!from) return;
      if (from->lowerThreshold != to.lowerThreshold || from->upperThreshold != to.upperThreshold) {
        w << " thresholds " << from->lowerThreshold << ".." << from->upperThreshold << " => " << to.lowerThreshold
          << ".." << to.upperThreshold;
      }
      if (from->tunType != to.tunType || from->tunPort != to.tunPort || from->tunFlags != to.tunFlags) {
        auto tunnel = [&](const DestSpec& d) {
          w << tunTypeName(d.tunType) << " port " << d.tunPort << " flags " << d.tunFlags;
        };
        w << " tunnel ";
        tunnel(*from);
        w << " => ";
        tunnel(to);
      }
      return;
    }
    case Op::Kind::kDeleteDest:
      w << "      - " << op.dest;
      return;
  }
}

}  // namespace

void renderPlanText(const Plan& plan, const PlanContext& ctx, std::ostream& out) {
  // A service's one service op, if any, comes first (plan.h): counting from
  // the fronts spares a walk over every op before the first line is written.
  size_t creates = 0, updates = 0, deletes = 0, destOps = 0;
  for (const auto& sp : plan.services) {
    destOps += sp.ops.size();
    if (sp.ops.empty() || !sp.ops.front().isServiceOp()) continue;
    --destOps;
    const Op::Kind kind = sp.ops.front().kind;
    if (kind == Op::Kind::kAddService) ++creates;
    if (kind == Op::Kind::kUpdateService) ++updates;
    if (kind == Op::Kind::kDeleteService) ++deletes;
  }
  Writer w(out);
  w << "Plan: " << creates << " virtual servers to add, " << updates << " to update, " << deletes << " to delete; "
    << destOps << " real-server changes; " << plan.opCount() << " kernel writes";
  if (plan.drainingCount()) w << "; " << plan.drainingCount() << " real servers draining";
  w << '\n';
  ServiceLookup actual(ctx.actual ? &ctx.actual->services : nullptr);
  OriginLookup origins(ctx.desired ? &ctx.desired->origins : nullptr);
  for (const auto& sp : plan.services) {
    const ServiceState* have = actual.find(sp.key);
    if (!sp.ops.empty() && sp.ops.front().isServiceOp()) {
      opLine(sp.ops.front(), have, w);
    } else {
      w << "  = service " << sp.key;
    }
    originText(origins.find(sp.key), w);
    w << '\n';
    for (const auto& op : sp.ops) {
      if (op.isServiceOp()) continue;
      opLine(op, have, w);
      w << '\n';
      w.breakPoint();
    }
    for (const auto& d : sp.draining) {
      w << "      ~ " << d.dest << " draining at weight 0: " << d.activeConns << " active, "
        << d.inactiveConns << " inactive connections\n";
    }
    w.breakPoint();
  }
  for (const auto& k : plan.leftAlone) w << "  . left alone " << k << " (not owned by kipvs)\n";
  for (const auto& k : plan.kept) w << "  . kept " << k << " as it is (its Service is invalid: see the errors)\n";
  if (ctx.desired) {
    for (const auto& n : ctx.desired->notes) w << "note: " << n << '\n';
  }
}

void renderPlanJson(const Plan& plan, const PlanContext& ctx, std::ostream& out) {
  Writer w(out);
  w << "{\"writes\":" << plan.opCount() << ",\"draining\":" << plan.drainingCount() << ",\"services\":[";
  OriginLookup origins(ctx.desired ? &ctx.desired->origins : nullptr);
  bool first = true;
  for (const auto& sp : plan.services) {
    w << (first ? "" : ",") << "\n {\"service\":\"" << sp.key << "\",\"key\":";
    first = false;
    keyJson(sp.key, w);
    static const char* actions[] = {"create", "update", "dests", "delete"};
    w << ",\"action\":\"" << actions[static_cast<int>(sp.action)] << '"';
    if (const VsOrigin* o = origins.find(sp.key)) {
      w << ",\"origin\":{\"service\":" << Json{o->service} << ",\"port\":" << Json{o->portName}
        << ",\"kind\":" << Json{o->kind} << '}';
    }
    w << ",\"ops\":[";
    bool firstOp = true;
    for (const auto& op : sp.ops) {
      w << (firstOp ? "" : ",") << "{\"op\":\"" << ipvs::opKindName(op.kind) << '"';
      firstOp = false;
      if (op.kind == Op::Kind::kAddService || op.kind == Op::Kind::kUpdateService) {
        w << ",\"spec\":";
        serviceSpecJson(op.service, op.serviceSpec, w);
      }
      if (!op.isServiceOp()) {
        w << ",\"dest\":\"" << op.dest << '"';
        if (op.kind != Op::Kind::kDeleteDest) {
          w << ",\"spec\":";
          destSpecJson(op.destSpec, w);
        }
      }
      w << '}';
      w.breakPoint();
    }
    w << "],\"draining\":[";
    bool firstD = true;
    for (const auto& d : sp.draining) {
      w << (firstD ? "" : ",") << "{\"dest\":\"" << d.dest << "\",\"activeConns\":" << d.activeConns
        << ",\"inactiveConns\":" << d.inactiveConns << '}';
      firstD = false;
    }
    w << "]}";
    w.breakPoint();
  }
  w << "\n],\"leftAlone\":[";
  for (size_t i = 0; i < plan.leftAlone.size(); ++i) w << (i ? "," : "") << '"' << plan.leftAlone[i] << '"';
  w << "],\"kept\":[";
  for (size_t i = 0; i < plan.kept.size(); ++i) w << (i ? "," : "") << '"' << plan.kept[i] << '"';
  w << "],\"notes\":[";
  if (ctx.desired) {
    for (size_t i = 0; i < ctx.desired->notes.size(); ++i) w << (i ? "," : "") << Json{ctx.desired->notes[i]};
  }
  w << "]}\n";
}

}  // namespace kipvs::controller
