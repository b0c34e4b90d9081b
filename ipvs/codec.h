#pragma once
// Model types <-> IPVS generic netlink attributes (linux/ip_vs.h). No socket:
// encoders append to a netlink::MessageWriter, decoders read byte spans, so
// both run in memory in tests.
//
// Wire facts: addresses are 16 bytes (union nf_inet_addr), ports are network
// order, service flags are struct ip_vs_flags {flags, mask} (mask ~0 on write;
// the kernel sets HASHED in every dump, masked here), the IPv4 netmask is a
// network-order mask and the IPv6 one a prefix length. Stats: STATS64
// preferred, STATS as fallback, PAD skipped.
//
// Decoding is defensive: malformed or missing required attributes give
// Code::kParse naming the attribute; unknown attributes are ignored.

#include <linux/ip_vs.h>

#include <cstdint>

#include "ipvs/client.h"
#include "ipvs/model.h"
#include "netlink/message.h"
#include "netlink/status.h"

namespace kipvs::ipvs::codec {

inline constexpr uint8_t kGenlVersion = IPVS_GENL_VERSION;
inline constexpr char kGenlName[] = IPVS_GENL_NAME;

// ---- encoding: attributes appended to the message open in `w` ----

// IPVS_CMD_ATTR_SERVICE with the key only (AF + FWMARK, or AF + PROTOCOL + ADDR + PORT).
// kInvalid when the key's address family disagrees with its family.
Status putServiceKey(netlink::MessageWriter& w, const ServiceKey& key);
// IPVS_CMD_ATTR_SERVICE with key and full spec (what NEW/SET_SERVICE need).
Status putService(netlink::MessageWriter& w, const ServiceKey& key, const ServiceSpec& spec);
// IPVS_CMD_ATTR_DEST: ADDR, PORT, ADDR_FAMILY, plus the full spec when given
// (NEW/SET_DEST); DEL_DEST sends the key only.
void putDest(netlink::MessageWriter& w, const DestKey& key, const DestSpec* spec);
// IPVS_CMD_ATTR_TIMEOUT_*; zero fields are left out (the kernel keeps them).
void putTimeouts(netlink::MessageWriter& w, const Timeouts& t);

// IPVS_CMD_NEW_SERVICE, ..., IPVS_CMD_DEL_DEST.
uint8_t commandFor(Op::Kind kind);

// One complete request (nlmsghdr + genlmsghdr + attributes) for `op`. On error
// nothing is appended.
Status encodeOp(netlink::MessageWriter& w, uint16_t familyId, uint16_t flags, uint32_t seq, const Op& op);

// ---- decoding ----

struct ServiceEntry {
  ServiceKey key;
  ServiceSpec spec;
  Stats stats;
};

struct DestEntry {
  DestKey key;
  DestSpec spec;
  DestCounters counters;
};

// Whether decoding reads the traffic counters (STATS64 / STATS nests). A
// caller that only compares or restores tables (reconcile, `dump --output
// ipvsadm`) skips them: they are a third of a destination's attributes, and
// the stats stay zero.
enum class WithStats : bool { kNo = false, kYes = true };

// The attributes inside an IPVS_CMD_ATTR_SERVICE nest.
StatusOr<ServiceEntry> decodeService(netlink::Bytes nest, WithStats stats = WithStats::kYes);
// The attributes inside an IPVS_CMD_ATTR_DEST nest. `serviceFamily` is the
// dest's family when the (older) kernel sends no IPVS_DEST_ATTR_ADDR_FAMILY.
StatusOr<DestEntry> decodeDest(netlink::Bytes nest, Family serviceFamily, WithStats stats = WithStats::kYes);
// The attributes inside a STATS or STATS64 nest (u32 or u64 per counter).
StatusOr<Stats> decodeStats(netlink::Bytes nest);

// Top-level genl attributes (after the genlmsghdr) of a reply message.
StatusOr<ServiceEntry> decodeServiceMessage(netlink::Bytes attrs, WithStats stats = WithStats::kYes);
StatusOr<DestEntry> decodeDestMessage(netlink::Bytes attrs, Family serviceFamily, WithStats stats = WithStats::kYes);
StatusOr<Timeouts> decodeTimeouts(netlink::Bytes attrs);
StatusOr<Info> decodeInfo(netlink::Bytes attrs);

}  // namespace kipvs::ipvs::codec
