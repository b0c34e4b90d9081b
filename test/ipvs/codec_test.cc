// IPVS codec: round trips, golden bytes written by hand from the uapi layout
// (linux/ip_vs.h), libnl as an independent parser, and malformed input.
#include <doctest/doctest.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include <arpa/inet.h>

#include <cstring>
#include <random>
#include <vector>

#include "ipvs/codec.h"
#include "ipvs/model.h"
#include "netlink/message.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using kipvs::netlink::Bytes;
using kipvs::netlink::MessageWriter;

namespace {

constexpr uint16_t kFamilyId = 0x1234;

Address A(const char* s) { return *Address::parse(s); }

std::vector<uint8_t> copy(Bytes b) { return std::vector<uint8_t>(b.begin(), b.end()); }

// The genl attributes of the single message in `w`.
std::vector<uint8_t> attrsOf(const MessageWriter& w) {
  netlink::MessageIter it(w.bytes());
  auto m = it.next();
  REQUIRE(m);
  auto g = netlink::parseGenl(*m);
  REQUIRE(g.isOk());
  return copy(g->attrs);
}

std::vector<uint8_t> encodeServiceAttrs(const ServiceKey& k, const ServiceSpec& s) {
  MessageWriter w;
  w.beginGenl(kFamilyId, NLM_F_REQUEST, 1, IPVS_CMD_NEW_SERVICE, codec::kGenlVersion);
  REQUIRE(codec::putService(w, k, s).isOk());
  w.endMessage();
  return attrsOf(w);
}

std::vector<uint8_t> encodeDestAttrs(const ServiceKey& k, const DestKey& d, const DestSpec& s) {
  MessageWriter w;
  REQUIRE(codec::encodeOp(w, kFamilyId, NLM_F_REQUEST, 1, Op::addDest(k, d, s)).isOk());
  return attrsOf(w);
}

// The inside of a nest built with `fill` (a kernel-like reply written by hand).
template <typename F>
std::vector<uint8_t> run(F fill) {
  MessageWriter w;
  fill(w);
  return copy(w.bytes());
}

void putV4ServiceKey(MessageWriter& w) {
  w.putU16(IPVS_SVC_ATTR_AF, AF_INET);
  w.putU16(IPVS_SVC_ATTR_PROTOCOL, IPPROTO_TCP);
  uint8_t addr[16] = {10, 0, 0, 1};
  w.putBytes(IPVS_SVC_ATTR_ADDR, addr, sizeof addr);
  w.putBe16(IPVS_SVC_ATTR_PORT, 80);
}

void putServiceSpecAttrs(MessageWriter& w) {
  w.putString(IPVS_SVC_ATTR_SCHED_NAME, "rr");
  ip_vs_flags f{IP_VS_SVC_F_HASHED, ~0u};
  w.putBytes(IPVS_SVC_ATTR_FLAGS, &f, sizeof f);
  w.putU32(IPVS_SVC_ATTR_TIMEOUT, 0);
  w.putBe32(IPVS_SVC_ATTR_NETMASK, 0xffffffff);
}

// A service nest as the kernel dumps it; `skip` leaves out one attribute type.
std::vector<uint8_t> kernelService(int skip = -1) {
  MessageWriter all;
  putV4ServiceKey(all);
  putServiceSpecAttrs(all);
  if (skip < 0) return copy(all.bytes());
  MessageWriter out;
  netlink::AttrIter it(all.bytes());
  while (auto a = it.next()) {
    if (a->type != skip) out.putBytes(a->type, a->data);
  }
  return copy(out.bytes());
}

// A dest nest as the kernel dumps it.
std::vector<uint8_t> kernelDest(int skip = -1) {
  MessageWriter all;
  uint8_t addr[16] = {172, 16, 0, 2};
  all.putBytes(IPVS_DEST_ATTR_ADDR, addr, sizeof addr);
  all.putBe16(IPVS_DEST_ATTR_PORT, 8080);
  all.putU32(IPVS_DEST_ATTR_FWD_METHOD, IP_VS_CONN_F_MASQ);
  all.putU32(IPVS_DEST_ATTR_WEIGHT, 3);
  all.putU32(IPVS_DEST_ATTR_U_THRESH, 0);
  all.putU32(IPVS_DEST_ATTR_L_THRESH, 0);
  all.putU32(IPVS_DEST_ATTR_ACTIVE_CONNS, 0);
  all.putU16(IPVS_DEST_ATTR_ADDR_FAMILY, AF_INET);
  if (skip < 0) return copy(all.bytes());
  MessageWriter out;
  netlink::AttrIter it(all.bytes());
  while (auto a = it.next()) {
    if (a->type != skip) out.putBytes(a->type, a->data);
  }
  return copy(out.bytes());
}

// Replaces the payload of attribute `type` in a run.
std::vector<uint8_t> withPayload(const std::vector<uint8_t>& run, uint16_t type, std::vector<uint8_t> payload) {
  MessageWriter out;
  netlink::AttrIter it{Bytes(run)};
  while (auto a = it.next()) {
    if (a->type == type) {
      out.putBytes(type, payload.data(), payload.size());
    } else {
      out.putBytes(a->type, a->data);
    }
  }
  return copy(out.bytes());
}

std::string parseMessage(const Status& s) { return s.message(); }

}  // namespace

TEST_CASE("codec: service round trips") {
  struct Case {
    const char* name;
    ServiceKey key;
    ServiceSpec spec;
  };
  ServiceSpec persistent{"wrr", kSvcFlagPersistent | kSvcFlagOnePacket, 300, 0xffffff00u, ""};
  ServiceSpec v6{"sh", kSvcFlagSched1 | kSvcFlagSched2, 0, 64, ""};
  ServiceSpec pe{"rr", kSvcFlagPersistent, 60, 0xffffffffu, "sip"};
  std::vector<Case> cases = {
      {"v4 tcp", ServiceKey::tcp(A("10.0.0.1"), 80), ServiceSpec{"rr", 0, 0, 0xffffffffu, ""}},
      {"v4 udp persistent /24", ServiceKey::make(Protocol::kUdp, A("10.96.0.10"), 53), persistent},
      {"v4 sctp pe", ServiceKey::make(Protocol::kSctp, A("192.168.1.1"), 3868), pe},
      {"v6 tcp /64", ServiceKey::make(Protocol::kTcp, A("fd00::1"), 443), v6},
      {"v6 full address", ServiceKey::tcp(A("2001:db8:ffff:1:2:3:4:5"), 65535), ServiceSpec{"mh", 0, 0, 128, ""}},
      {"fwmark v4", ServiceKey::mark(Family::kV4, 0xdeadbeef), ServiceSpec{"lc", 0, 0, 0xffffffffu, ""}},
      {"fwmark v6", ServiceKey::mark(Family::kV6, 7), ServiceSpec{"rr", 0, 0, 128, ""}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto attrs = encodeServiceAttrs(c.key, c.spec);
    auto e = codec::decodeServiceMessage(attrs);
    REQUIRE_MESSAGE(e.isOk(), e.status().toString());
    CHECK(e->key == c.key);
    CHECK(e->spec == c.spec);
    CHECK(e->stats == Stats{});
  }
}

TEST_CASE("codec: HASHED is masked on write and read") {
  ServiceSpec spec{"rr", kSvcFlagHashed | kSvcFlagPersistent, 10, 0xffffffffu, ""};
  auto attrs = encodeServiceAttrs(ServiceKey::tcp(A("10.0.0.1"), 80), spec);
  auto e = codec::decodeServiceMessage(attrs);
  REQUIRE(e.isOk());
  CHECK(e->spec.flags == kSvcFlagPersistent);

  auto dumped = codec::decodeService(kernelService());  // kernel sets HASHED in every dump
  REQUIRE(dumped.isOk());
  CHECK(dumped->spec.flags == 0);
}

TEST_CASE("codec: dest round trips") {
  struct Case {
    const char* name;
    ServiceKey service;
    DestKey key;
    DestSpec spec;
  };
  auto svc4 = ServiceKey::tcp(A("10.0.0.1"), 80);
  auto svc6 = ServiceKey::tcp(A("fd00::1"), 80);
  std::vector<Case> cases = {
      {"masq", svc4, DestKey{A("172.16.0.2"), 8080}, DestSpec{FwdMethod::kMasq, 1, 0, 0, TunnelType::kIpip, 0, 0}},
      {"thresholds", svc4, DestKey{A("172.16.0.3"), 80},
       DestSpec{FwdMethod::kRoute, 0, 1000, 10, TunnelType::kIpip, 0, 0}},
      {"big weight", svc4, DestKey{A("172.16.0.4"), 1}, DestSpec{FwdMethod::kLocal, 65535, 0, 0, {}, 0, 0}},
      {"gue tunnel", svc4, DestKey{A("172.16.0.5"), 80},
       DestSpec{FwdMethod::kTunnel, 2, 0, 0, TunnelType::kGue, 6080, kTunFlagCsum}},
      {"gre tunnel remcsum", svc4, DestKey{A("172.16.0.6"), 80},
       DestSpec{FwdMethod::kTunnel, 2, 0, 0, TunnelType::kGre, 0, kTunFlagRemCsum}},
      {"v6", svc6, DestKey{A("fd00:1::2"), 8443}, DestSpec{FwdMethod::kMasq, 7, 0, 0, {}, 0, 0}},
      {"v4 dest in v6 service", svc6, DestKey{A("172.16.0.9"), 80},
       DestSpec{FwdMethod::kTunnel, 1, 0, 0, TunnelType::kIpip, 0, 0}},
      {"bypass", ServiceKey::mark(Family::kV4, 3), DestKey{A("172.16.0.7"), 0},
       DestSpec{FwdMethod::kBypass, 1, 0, 0, {}, 0, 0}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto attrs = encodeDestAttrs(c.service, c.key, c.spec);
    auto d = codec::decodeDestMessage(attrs, c.service.family);
    REQUIRE_MESSAGE(d.isOk(), d.status().toString());
    CHECK(d->key == c.key);
    CHECK(d->spec == c.spec);
    // The same message also carries the service key.
    std::optional<Bytes> top[IPVS_CMD_ATTR_MAX + 1];
    REQUIRE(netlink::parseAttrs(attrs, top).isOk());
    REQUIRE(top[IPVS_CMD_ATTR_SERVICE]);
  }
}

TEST_CASE("codec: every op kind encodes its command and attributes") {
  auto svc = ServiceKey::tcp(A("10.0.0.1"), 80);
  DestKey dk{A("172.16.0.2"), 80};
  struct Case {
    Op op;
    uint8_t cmd;
    bool hasSpec;
    bool hasDest;
  };
  std::vector<Case> cases = {
      {Op::addService(svc, ServiceSpec{}), IPVS_CMD_NEW_SERVICE, true, false},
      {Op::updateService(svc, ServiceSpec{}), IPVS_CMD_SET_SERVICE, true, false},
      {Op::deleteService(svc), IPVS_CMD_DEL_SERVICE, false, false},
      {Op::addDest(svc, dk, DestSpec{}), IPVS_CMD_NEW_DEST, false, true},
      {Op::updateDest(svc, dk, DestSpec{}), IPVS_CMD_SET_DEST, false, true},
      {Op::deleteDest(svc, dk), IPVS_CMD_DEL_DEST, false, true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.op.toString());
    MessageWriter w;
    REQUIRE(codec::encodeOp(w, kFamilyId, NLM_F_REQUEST, 77, c.op).isOk());
    netlink::MessageIter it(w.bytes());
    auto m = it.next();
    REQUIRE(m);
    CHECK(m->type == kFamilyId);
    CHECK(m->seq == 77);
    auto g = netlink::parseGenl(*m);
    REQUIRE(g.isOk());
    CHECK(g->cmd == c.cmd);
    CHECK(g->version == IPVS_GENL_VERSION);
    std::optional<Bytes> top[IPVS_CMD_ATTR_MAX + 1];
    REQUIRE(netlink::parseAttrs(g->attrs, top).isOk());
    REQUIRE(top[IPVS_CMD_ATTR_SERVICE]);
    std::optional<Bytes> svcAttrs[IPVS_SVC_ATTR_MAX + 1];
    REQUIRE(netlink::parseAttrs(*top[IPVS_CMD_ATTR_SERVICE], svcAttrs).isOk());
    CHECK(svcAttrs[IPVS_SVC_ATTR_SCHED_NAME].has_value() == c.hasSpec);
    CHECK(top[IPVS_CMD_ATTR_DEST].has_value() == c.hasDest);
    if (c.hasDest) {
      std::optional<Bytes> d[IPVS_DEST_ATTR_MAX + 1];
      REQUIRE(netlink::parseAttrs(*top[IPVS_CMD_ATTR_DEST], d).isOk());
      // Delete sends the key only; add/update the full spec.
      CHECK(d[IPVS_DEST_ATTR_WEIGHT].has_value() == (c.op.kind != Op::Kind::kDeleteDest));
    }
  }
}

TEST_CASE("codec: a key whose address family differs is rejected and nothing is written") {
  ServiceKey bad = ServiceKey::tcp(A("10.0.0.1"), 80);
  bad.family = Family::kV6;
  MessageWriter w;
  auto s = codec::encodeOp(w, kFamilyId, NLM_F_REQUEST, 1, Op::addService(bad, ServiceSpec{}));
  CHECK(s.code() == Code::kInvalid);
  CHECK(w.size() == 0);
  CHECK(w.messageCount() == 0);
}

TEST_CASE("codec: golden bytes of NEW_SERVICE TCP 10.0.0.1:8080 wrr persistent 300s /24") {
  MessageWriter w;
  ServiceSpec spec{"wrr", kSvcFlagPersistent, 300, 0xffffff00u, ""};
  REQUIRE(codec::encodeOp(w, kFamilyId, NLM_F_REQUEST | NLM_F_ACK, 7,
                          Op::addService(ServiceKey::tcp(A("10.0.0.1"), 8080), spec))
              .isOk());
  const std::vector<uint8_t> want = {
      // nlmsghdr: len 104, type 0x1234, flags REQUEST|ACK (0x0005), seq 7, pid 0
      104, 0, 0, 0, 0x34, 0x12, 0x05, 0x00, 7, 0, 0, 0, 0, 0, 0, 0,
      // genlmsghdr: cmd NEW_SERVICE (1), version 1
      1, 1, 0, 0,
      // IPVS_CMD_ATTR_SERVICE (1) nest, len 84
      84, 0, 1, 0,
      //   AF (1) u16 AF_INET, padded
      6, 0, 1, 0, 2, 0, 0, 0,
      //   PROTOCOL (2) u16 IPPROTO_TCP
      6, 0, 2, 0, 6, 0, 0, 0,
      //   ADDR (3) 16 bytes, IPv4 in the first 4
      20, 0, 3, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      //   PORT (4) 8080 in network order
      6, 0, 4, 0, 0x1f, 0x90, 0, 0,
      //   SCHED_NAME (6) "wrr\0"
      8, 0, 6, 0, 'w', 'r', 'r', 0,
      //   FLAGS (7) struct ip_vs_flags {flags = PERSISTENT, mask = ~0}
      12, 0, 7, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
      //   TIMEOUT (8) u32 300
      8, 0, 8, 0, 0x2c, 0x01, 0, 0,
      //   NETMASK (9) 255.255.255.0 in network order
      8, 0, 9, 0, 0xff, 0xff, 0xff, 0x00,
  };
  CHECK(copy(w.bytes()) == want);
}

TEST_CASE("codec: golden bytes of NEW_DEST TCP 10.0.0.1:80 -> 172.16.0.2:80 GUE tunnel") {
  MessageWriter w;
  DestSpec spec{FwdMethod::kTunnel, 5, 100, 10, TunnelType::kGue, 6080, kTunFlagCsum};
  REQUIRE(codec::encodeOp(w, kFamilyId, NLM_F_REQUEST, 0x01020304,
                          Op::addDest(ServiceKey::tcp(A("10.0.0.1"), 80), DestKey{A("172.16.0.2"), 80}, spec))
              .isOk());
  const std::vector<uint8_t> want = {
      // nlmsghdr: len 164, type 0x1234, flags REQUEST, seq 0x01020304
      164, 0, 0, 0, 0x34, 0x12, 0x01, 0x00, 0x04, 0x03, 0x02, 0x01, 0, 0, 0, 0,
      // genlmsghdr: cmd NEW_DEST (5), version 1
      5, 1, 0, 0,
      // IPVS_CMD_ATTR_SERVICE (1) nest with the key only, len 48
      48, 0, 1, 0,
      6, 0, 1, 0, 2, 0, 0, 0,
      6, 0, 2, 0, 6, 0, 0, 0,
      20, 0, 3, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      6, 0, 4, 0, 0x00, 0x50, 0, 0,
      // IPVS_CMD_ATTR_DEST (2) nest, len 96
      96, 0, 2, 0,
      //   ADDR (1)
      20, 0, 1, 0, 172, 16, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      //   PORT (2) 80, network order
      6, 0, 2, 0, 0x00, 0x50, 0, 0,
      //   ADDR_FAMILY (11) AF_INET
      6, 0, 11, 0, 2, 0, 0, 0,
      //   FWD_METHOD (3) IP_VS_CONN_F_TUNNEL
      8, 0, 3, 0, 2, 0, 0, 0,
      //   WEIGHT (4) 5
      8, 0, 4, 0, 5, 0, 0, 0,
      //   U_THRESH (5) 100
      8, 0, 5, 0, 100, 0, 0, 0,
      //   L_THRESH (6) 10
      8, 0, 6, 0, 10, 0, 0, 0,
      //   TUN_TYPE (13) u8 GUE
      5, 0, 13, 0, 1, 0, 0, 0,
      //   TUN_PORT (14) 6080 network order
      6, 0, 14, 0, 0x17, 0xc0, 0, 0,
      //   TUN_FLAGS (15) u16 CSUM
      6, 0, 15, 0, 1, 0, 0, 0,
  };
  CHECK(copy(w.bytes()) == want);
}

TEST_CASE("codec: libnl parses our messages with the kernel's attribute lengths") {
  // An independent parser: libnl with policies mirroring ip_vs_ctl.c.
  nla_policy cmdPolicy[IPVS_CMD_ATTR_MAX + 1] = {};
  cmdPolicy[IPVS_CMD_ATTR_SERVICE].type = NLA_NESTED;
  cmdPolicy[IPVS_CMD_ATTR_DEST].type = NLA_NESTED;
  nla_policy svcPolicy[IPVS_SVC_ATTR_MAX + 1] = {};
  svcPolicy[IPVS_SVC_ATTR_AF].type = NLA_U16;
  svcPolicy[IPVS_SVC_ATTR_PROTOCOL].type = NLA_U16;
  svcPolicy[IPVS_SVC_ATTR_ADDR].minlen = 16;
  svcPolicy[IPVS_SVC_ATTR_PORT].type = NLA_U16;
  svcPolicy[IPVS_SVC_ATTR_SCHED_NAME].type = NLA_STRING;
  svcPolicy[IPVS_SVC_ATTR_SCHED_NAME].maxlen = IP_VS_SCHEDNAME_MAXLEN;
  svcPolicy[IPVS_SVC_ATTR_FLAGS].minlen = sizeof(ip_vs_flags);
  svcPolicy[IPVS_SVC_ATTR_TIMEOUT].type = NLA_U32;
  svcPolicy[IPVS_SVC_ATTR_NETMASK].type = NLA_U32;
  nla_policy destPolicy[IPVS_DEST_ATTR_MAX + 1] = {};
  destPolicy[IPVS_DEST_ATTR_ADDR].minlen = 16;
  destPolicy[IPVS_DEST_ATTR_PORT].type = NLA_U16;
  destPolicy[IPVS_DEST_ATTR_FWD_METHOD].type = NLA_U32;
  destPolicy[IPVS_DEST_ATTR_WEIGHT].type = NLA_U32;
  destPolicy[IPVS_DEST_ATTR_TUN_TYPE].type = NLA_U8;
  destPolicy[IPVS_DEST_ATTR_TUN_PORT].type = NLA_U16;
  destPolicy[IPVS_DEST_ATTR_TUN_FLAGS].type = NLA_U16;
  destPolicy[IPVS_DEST_ATTR_ADDR_FAMILY].type = NLA_U16;

  MessageWriter w;
  DestSpec spec{FwdMethod::kTunnel, 9, 0, 0, TunnelType::kGue, 6080, kTunFlagCsum};
  REQUIRE(codec::encodeOp(w, kFamilyId, NLM_F_REQUEST, 3,
                          Op::addDest(ServiceKey::make(Protocol::kUdp, A("fd00::53"), 53),
                                      DestKey{A("fd00:1::7"), 5353}, spec))
              .isOk());
  std::vector<uint8_t> bytes = copy(w.bytes());
  nlmsghdr* hdr = reinterpret_cast<nlmsghdr*>(bytes.data());
  REQUIRE(genlmsg_valid_hdr(hdr, 0));
  nlattr* tb[IPVS_CMD_ATTR_MAX + 1];
  REQUIRE(genlmsg_parse(hdr, 0, tb, IPVS_CMD_ATTR_MAX, cmdPolicy) == 0);
  REQUIRE(tb[IPVS_CMD_ATTR_SERVICE]);
  REQUIRE(tb[IPVS_CMD_ATTR_DEST]);
  nlattr* svc[IPVS_SVC_ATTR_MAX + 1];
  REQUIRE(nla_parse_nested(svc, IPVS_SVC_ATTR_MAX, tb[IPVS_CMD_ATTR_SERVICE], svcPolicy) == 0);
  CHECK(nla_get_u16(svc[IPVS_SVC_ATTR_AF]) == AF_INET6);
  CHECK(nla_get_u16(svc[IPVS_SVC_ATTR_PROTOCOL]) == IPPROTO_UDP);
  CHECK(ntohs(nla_get_u16(svc[IPVS_SVC_ATTR_PORT])) == 53);
  in6_addr want6{};
  inet_pton(AF_INET6, "fd00::53", &want6);
  CHECK(std::memcmp(nla_data(svc[IPVS_SVC_ATTR_ADDR]), &want6, 16) == 0);
  nlattr* dest[IPVS_DEST_ATTR_MAX + 1];
  REQUIRE(nla_parse_nested(dest, IPVS_DEST_ATTR_MAX, tb[IPVS_CMD_ATTR_DEST], destPolicy) == 0);
  CHECK(ntohs(nla_get_u16(dest[IPVS_DEST_ATTR_PORT])) == 5353);
  CHECK(nla_get_u32(dest[IPVS_DEST_ATTR_FWD_METHOD]) == IP_VS_CONN_F_TUNNEL);
  CHECK(nla_get_u32(dest[IPVS_DEST_ATTR_WEIGHT]) == 9);
  CHECK(nla_get_u8(dest[IPVS_DEST_ATTR_TUN_TYPE]) == IP_VS_CONN_F_TUNNEL_TYPE_GUE);
  CHECK(ntohs(nla_get_u16(dest[IPVS_DEST_ATTR_TUN_PORT])) == 6080);
  CHECK(nla_get_u16(dest[IPVS_DEST_ATTR_TUN_FLAGS]) == IP_VS_TUNNEL_ENCAP_FLAG_CSUM);
  CHECK(nla_get_u16(dest[IPVS_DEST_ATTR_ADDR_FAMILY]) == AF_INET6);
}

TEST_CASE("codec: dest counters and stats: STATS64 preferred, STATS fallback, PAD skipped") {
  auto stats32 = [](MessageWriter& w, uint16_t type, uint32_t base) {
    size_t n = w.beginNest(type);
    w.putU32(IPVS_STATS_ATTR_CONNS, base + 1);
    w.putU32(IPVS_STATS_ATTR_INPKTS, base + 2);
    w.putU32(IPVS_STATS_ATTR_OUTPKTS, base + 3);
    w.putBytes(IPVS_STATS_ATTR_PAD, nullptr, 0);  // the kernel's alignment filler
    w.putU64(IPVS_STATS_ATTR_INBYTES, base + 4);  // bytes are u64 even in STATS
    w.putBytes(IPVS_STATS_ATTR_PAD, nullptr, 0);
    w.putU64(IPVS_STATS_ATTR_OUTBYTES, base + 5);
    w.putU32(IPVS_STATS_ATTR_CPS, base + 6);
    w.putU32(IPVS_STATS_ATTR_INPPS, base + 7);
    w.putU32(IPVS_STATS_ATTR_OUTPPS, base + 8);
    w.putU32(IPVS_STATS_ATTR_INBPS, base + 9);
    w.putU32(IPVS_STATS_ATTR_OUTBPS, base + 10);
    w.endNest(n);
  };
  auto stats64 = [](MessageWriter& w, uint16_t type, uint64_t base) {
    size_t n = w.beginNest(type);
    for (uint16_t t = IPVS_STATS_ATTR_CONNS; t <= IPVS_STATS_ATTR_OUTBPS; ++t) {
      w.putBytes(IPVS_STATS_ATTR_PAD, nullptr, 0);
      w.putU64(t, base + t);
    }
    w.endNest(n);
  };
  const uint64_t big = 1ull << 40;
  Stats want64{big + 1, big + 2, big + 3, big + 4, big + 5, big + 6, big + 7, big + 8, big + 9, big + 10};
  Stats want32{101, 102, 103, 104, 105, 106, 107, 108, 109, 110};

  SUBCASE("both present: STATS64 wins") {
    auto nest = run([&](MessageWriter& w) {
      auto base = kernelDest();
      w.putRaw(base.data(), base.size());
      w.putU32(IPVS_DEST_ATTR_INACT_CONNS, 4);
      w.putU32(IPVS_DEST_ATTR_PERSIST_CONNS, 5);
      stats32(w, IPVS_DEST_ATTR_STATS, 100);
      stats64(w, IPVS_DEST_ATTR_STATS64, big);
    });
    auto d = codec::decodeDest(nest, Family::kV4);
    REQUIRE_MESSAGE(d.isOk(), d.status().toString());
    CHECK(d->counters.inactiveConns == 4);
    CHECK(d->counters.persistentConns == 5);
    CHECK(d->counters.stats == want64);
  }
  SUBCASE("WithStats::kNo: the same entry, connection counts included, stats left zero") {
    auto nest = run([&](MessageWriter& w) {
      auto base = kernelDest();
      w.putRaw(base.data(), base.size());
      w.putU32(IPVS_DEST_ATTR_INACT_CONNS, 4);
      stats64(w, IPVS_DEST_ATTR_STATS64, big);
    });
    auto full = codec::decodeDest(nest, Family::kV4);
    auto lean = codec::decodeDest(nest, Family::kV4, codec::WithStats::kNo);
    REQUIRE(full.isOk());
    REQUIRE(lean.isOk());
    CHECK(lean->key == full->key);
    CHECK(lean->spec == full->spec);
    CHECK(lean->counters.activeConns == full->counters.activeConns);
    CHECK(lean->counters.inactiveConns == 4);
    CHECK(lean->counters.stats == Stats{});
    CHECK(full->counters.stats == want64);
    auto svc = run([&](MessageWriter& w) {
      auto base = kernelService();
      w.putRaw(base.data(), base.size());
      stats64(w, IPVS_SVC_ATTR_STATS64, big);
    });
    auto s = codec::decodeService(svc, codec::WithStats::kNo);
    REQUIRE(s.isOk());
    CHECK(s->spec == codec::decodeService(svc)->spec);
    CHECK(s->stats == Stats{});
  }
  SUBCASE("only STATS") {
    auto nest = run([&](MessageWriter& w) {
      auto base = kernelDest();
      w.putRaw(base.data(), base.size());
      stats32(w, IPVS_DEST_ATTR_STATS, 100);
    });
    auto d = codec::decodeDest(nest, Family::kV4);
    REQUIRE(d.isOk());
    CHECK(d->counters.stats == want32);
  }
  SUBCASE("service stats") {
    auto nest = run([&](MessageWriter& w) {
      auto base = kernelService();
      w.putRaw(base.data(), base.size());
      stats32(w, IPVS_SVC_ATTR_STATS, 100);
    });
    auto s = codec::decodeService(nest);
    REQUIRE(s.isOk());
    CHECK(s->stats == want32);
    auto nest64 = run([&](MessageWriter& w) {
      auto base = kernelService();
      w.putRaw(base.data(), base.size());
      stats64(w, IPVS_SVC_ATTR_STATS64, big);
      stats32(w, IPVS_SVC_ATTR_STATS, 100);
    });
    auto s64 = codec::decodeService(nest64);
    REQUIRE(s64.isOk());
    CHECK(s64->stats == want64);
  }
  SUBCASE("a counter of the wrong length") {
    auto nest = run([&](MessageWriter& w) {
      auto base = kernelDest();
      w.putRaw(base.data(), base.size());
      size_t n = w.beginNest(IPVS_DEST_ATTR_STATS64);
      w.putU16(IPVS_STATS_ATTR_CONNS, 1);
      w.endNest(n);
    });
    auto d = codec::decodeDest(nest, Family::kV4);
    CHECK(d.status().code() == Code::kParse);
    CHECK(parseMessage(d.status()).find("CONNS") != std::string::npos);
  }
}

TEST_CASE("codec: kernel-style dumps decode (v4 address as 16 bytes, dest family from ADDR_FAMILY)") {
  auto s = codec::decodeService(kernelService());
  REQUIRE_MESSAGE(s.isOk(), s.status().toString());
  CHECK(s->key == ServiceKey::tcp(A("10.0.0.1"), 80));
  CHECK(s->spec.scheduler == "rr");
  CHECK(s->spec.netmask == 0xffffffffu);

  auto d = codec::decodeDest(kernelDest(), Family::kV6);  // ADDR_FAMILY (v4) wins over the service family
  REQUIRE(d.isOk());
  CHECK(d->key == (DestKey{A("172.16.0.2"), 8080}));
  CHECK(d->spec.weight == 3);

  // Without ADDR_FAMILY (kernels before 4.x) the service family applies.
  auto old = codec::decodeDest(kernelDest(IPVS_DEST_ATTR_ADDR_FAMILY), Family::kV4);
  REQUIRE(old.isOk());
  CHECK(old->key.address == A("172.16.0.2"));

  // A bare 4-byte IPv4 address is accepted too.
  auto four = codec::decodeService(withPayload(kernelService(), IPVS_SVC_ATTR_ADDR, {10, 0, 0, 1}));
  REQUIRE(four.isOk());
  CHECK(four->key.address == A("10.0.0.1"));
}

TEST_CASE("codec: malformed services are parse errors; a protocol kipvs never makes is read as it is") {
  struct Case {
    const char* name;
    std::vector<uint8_t> nest;
    const char* mentions;
  };
  auto good = kernelService();
  std::vector<uint8_t> truncated = good;
  truncated.resize(truncated.size() - 2);  // last attribute cut short
  std::vector<uint8_t> lenTooBig = good;
  lenTooBig[0] = 0xf0;  // first attribute claims 240 bytes
  std::vector<Case> cases = {
      {"missing AF", kernelService(IPVS_SVC_ATTR_AF), "AF"},
      {"missing ADDR", kernelService(IPVS_SVC_ATTR_ADDR), "ADDR"},
      {"missing PORT", kernelService(IPVS_SVC_ATTR_PORT), "PORT"},
      {"missing PROTOCOL", kernelService(IPVS_SVC_ATTR_PROTOCOL), "PROTOCOL"},
      {"missing SCHED_NAME", kernelService(IPVS_SVC_ATTR_SCHED_NAME), "SCHED_NAME"},
      {"missing FLAGS", kernelService(IPVS_SVC_ATTR_FLAGS), "FLAGS"},
      {"missing NETMASK", kernelService(IPVS_SVC_ATTR_NETMASK), "NETMASK"},
      {"PORT of 3 bytes", withPayload(good, IPVS_SVC_ATTR_PORT, {0, 80, 0}), "PORT"},
      {"PORT of 4 bytes", withPayload(good, IPVS_SVC_ATTR_PORT, {0, 80, 0, 0}), "PORT"},
      {"ADDR of 8 bytes", withPayload(good, IPVS_SVC_ATTR_ADDR, {10, 0, 0, 1, 0, 0, 0, 0}), "ADDR"},
      {"ADDR empty", withPayload(good, IPVS_SVC_ATTR_ADDR, {}), "ADDR"},
      {"FLAGS of 4 bytes", withPayload(good, IPVS_SVC_ATTR_FLAGS, {0, 0, 0, 0}), "FLAGS"},
      {"AF of 4 bytes", withPayload(good, IPVS_SVC_ATTR_AF, {2, 0, 0, 0}), "AF"},
      {"unknown family", withPayload(good, IPVS_SVC_ATTR_AF, {7, 0}), "family 7"},
      {"truncated attribute", truncated, "attribute"},
      {"length beyond the nest", lenTooBig, "attribute"},
      {"empty nest", {}, "AF"},
      {"garbage", {1, 2, 3}, "attribute"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto s = codec::decodeService(c.nest);
    REQUIRE_FALSE(s.isOk());
    CHECK(s.status().code() == Code::kParse);
    CHECK_MESSAGE(parseMessage(s.status()).find(c.mentions) != std::string::npos, s.status().toString());
  }

  // An IPv6 service must carry all 16 address bytes.
  auto v6 = withPayload(withPayload(good, IPVS_SVC_ATTR_AF, {10, 0}), IPVS_SVC_ATTR_ADDR, {0xfd, 0, 0, 1});
  CHECK(codec::decodeService(v6).status().code() == Code::kParse);

  // A protocol kipvs never makes (ICMP, from a netlink tool; the kernel takes
  // it) is read as it is: a table read that failed on it would stop every
  // reconcile.
  auto icmp = codec::decodeService(withPayload(good, IPVS_SVC_ATTR_PROTOCOL, {1, 0}));
  REQUIRE(icmp.isOk());
  CHECK(static_cast<int>(icmp->key.protocol) == 1);
  CHECK(icmp->key.toString() == "IP_1 " + icmp->key.address.toString() + ":" + std::to_string(icmp->key.port));

  // A fwmark service needs no PROTOCOL/ADDR/PORT.
  MessageWriter fw;
  fw.putU16(IPVS_SVC_ATTR_AF, AF_INET);
  fw.putU32(IPVS_SVC_ATTR_FWMARK, 9);
  putServiceSpecAttrs(fw);
  auto f = codec::decodeService(fw.bytes());
  REQUIRE(f.isOk());
  CHECK(f->key == ServiceKey::mark(Family::kV4, 9));
}

TEST_CASE("codec: malformed dests are parse errors; values the kernel keeps unchecked are read as they are") {
  auto good = kernelDest();
  struct Case {
    const char* name;
    std::vector<uint8_t> nest;
    const char* mentions;
  };
  std::vector<Case> cases = {
      {"missing ADDR", kernelDest(IPVS_DEST_ATTR_ADDR), "ADDR"},
      {"missing PORT", kernelDest(IPVS_DEST_ATTR_PORT), "PORT"},
      {"missing FWD_METHOD", kernelDest(IPVS_DEST_ATTR_FWD_METHOD), "FWD_METHOD"},
      {"missing WEIGHT", kernelDest(IPVS_DEST_ATTR_WEIGHT), "WEIGHT"},
      {"PORT of 1 byte", withPayload(good, IPVS_DEST_ATTR_PORT, {80}), "PORT"},
      {"ADDR of 6 bytes", withPayload(good, IPVS_DEST_ATTR_ADDR, {1, 2, 3, 4, 5, 6}), "ADDR"},
      {"unknown ADDR_FAMILY", withPayload(good, IPVS_DEST_ATTR_ADDR_FAMILY, {3, 0}), "family 3"},
  };
  cases.push_back(Case{"TUN_PORT of 4 bytes", run([&](MessageWriter& w) {
                         w.putRaw(good.data(), good.size());
                         w.putU32(IPVS_DEST_ATTR_TUN_PORT, 1);
                       }),
                       "TUN_PORT"});
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto d = codec::decodeDest(c.nest, Family::kV4);
    REQUIRE_FALSE(d.isOk());
    CHECK(d.status().code() == Code::kParse);
    CHECK_MESSAGE(parseMessage(d.status()).find(c.mentions) != std::string::npos, d.status().toString());
  }

  // Values the kernel keeps without checking them (a netlink tool can set
  // them) are read as they are, not failed: the forwarding method masked as
  // the kernel masks it, the tunnel type whole.
  auto fwd5 = codec::decodeDest(withPayload(good, IPVS_DEST_ATTR_FWD_METHOD, {5, 0, 0, 0}), Family::kV4);
  REQUIRE(fwd5.isOk());
  CHECK(static_cast<uint32_t>(fwd5->spec.fwd) == 5);
  auto tun9 = codec::decodeDest(run([&](MessageWriter& w) {
                                  w.putRaw(good.data(), good.size());
                                  w.putU8(IPVS_DEST_ATTR_TUN_TYPE, 9);
                                }),
                                Family::kV4);
  REQUIRE(tun9.isOk());
  CHECK(static_cast<int>(tun9->spec.tunType) == 9);
}

TEST_CASE("codec: missing nests and unknown attributes") {
  // A message without the SERVICE / DEST nest.
  MessageWriter none;
  none.putU32(IPVS_CMD_ATTR_TIMEOUT_TCP, 900);
  CHECK(codec::decodeServiceMessage(none.bytes()).status().code() == Code::kParse);
  CHECK(codec::decodeDestMessage(none.bytes(), Family::kV4).status().code() == Code::kParse);

  // Unknown attributes, nested and top-level, are ignored.
  MessageWriter w;
  w.putU32(60, 1);  // a future top-level attribute
  size_t n = w.beginNest(IPVS_CMD_ATTR_SERVICE);
  w.putU64(250, 7);  // a future service attribute
  auto svc = kernelService();
  w.putRaw(svc.data(), svc.size());
  w.putString(IPVS_SVC_ATTR_MAX + 1, "future");
  w.endNest(n);
  auto s = codec::decodeServiceMessage(w.bytes());
  REQUIRE_MESSAGE(s.isOk(), s.status().toString());
  CHECK(s->key == ServiceKey::tcp(A("10.0.0.1"), 80));
}

TEST_CASE("codec: timeouts and info") {
  MessageWriter w;
  codec::putTimeouts(w, Timeouts{900, 120, 300});
  auto t = codec::decodeTimeouts(w.bytes());
  REQUIRE(t.isOk());
  CHECK(*t == Timeouts{900, 120, 300});

  MessageWriter partial;
  codec::putTimeouts(partial, Timeouts{0, 0, 60});  // zero = leave alone: not sent
  std::optional<Bytes> attrs[IPVS_CMD_ATTR_MAX + 1];
  REQUIRE(netlink::parseAttrs(partial.bytes(), attrs).isOk());
  CHECK_FALSE(attrs[IPVS_CMD_ATTR_TIMEOUT_TCP]);
  CHECK(attrs[IPVS_CMD_ATTR_TIMEOUT_UDP]);

  MessageWriter bad;
  bad.putU16(IPVS_CMD_ATTR_TIMEOUT_TCP, 5);
  CHECK(codec::decodeTimeouts(bad.bytes()).status().code() == Code::kParse);

  MessageWriter info;
  info.putU32(IPVS_INFO_ATTR_VERSION, 0x010201);
  info.putU32(IPVS_INFO_ATTR_CONN_TAB_SIZE, 4096);
  auto i = codec::decodeInfo(info.bytes());
  REQUIRE(i.isOk());
  CHECK(i->version == 0x010201);
  CHECK(i->connTableSize == 4096);

  MessageWriter noSize;
  noSize.putU32(IPVS_INFO_ATTR_VERSION, 0x010201);
  CHECK(codec::decodeInfo(noSize.bytes()).status().code() == Code::kParse);
}

TEST_CASE("codec: every truncation and random corruption is an error or a value, never a crash") {
  // Run under ASan/UBSan: any out-of-bounds read fails the build's test run.
  std::vector<std::vector<uint8_t>> seeds;
  seeds.push_back(encodeServiceAttrs(ServiceKey::tcp(A("fd00::1"), 443), ServiceSpec{"wrr", 1, 30, 64, "sip"}));
  seeds.push_back(encodeDestAttrs(ServiceKey::tcp(A("10.0.0.1"), 80), DestKey{A("172.16.0.1"), 80},
                                  DestSpec{FwdMethod::kTunnel, 1, 2, 3, TunnelType::kGue, 6080, 1}));
  std::mt19937 rng(12345);
  // Both outcomes must occur: the whole seeds decode, most cuts do not.
  size_t values = 0, errors = 0;
  auto count = [&](bool ok) { ++(ok ? values : errors); };
  for (const auto& seed : seeds) {
    for (size_t len = 0; len <= seed.size(); ++len) {
      // Exact-size heap copies so ASan sees reads past the end.
      auto* buf = new uint8_t[len ? len : 1];
      std::memcpy(buf, seed.data(), len);
      count(codec::decodeServiceMessage(Bytes(buf, len)).isOk());
      count(codec::decodeDestMessage(Bytes(buf, len), Family::kV4).isOk());
      delete[] buf;
    }
    for (int round = 0; round < 2000; ++round) {
      std::vector<uint8_t> b = seed;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
      auto* buf = new uint8_t[b.size()];
      std::memcpy(buf, b.data(), b.size());
      count(codec::decodeServiceMessage(Bytes(buf, b.size())).isOk());
      count(codec::decodeDestMessage(Bytes(buf, b.size()), Family::kV6).isOk());
      delete[] buf;
    }
  }
  CHECK(values >= 2);
  CHECK(errors > values);
}
