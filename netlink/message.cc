#include "netlink/message.h"

#include <arpa/inet.h>
#include <linux/genetlink.h>

#include <cassert>

namespace kipvs::netlink {
namespace {

constexpr size_t align4(size_t n) { return (n + 3) & ~size_t{3}; }

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

void MessageWriter::clear() {
  buf_.clear();
  open_ = kNone;
  last_ = kNone;
  messages_ = 0;
}

void MessageWriter::beginMessage(uint16_t type, uint16_t flags, uint32_t seq) {
  assert(open_ == kNone);
  open_ = buf_.size();
  nlmsghdr h{};
  h.nlmsg_len = 0;  // patched by endMessage
  h.nlmsg_type = type;
  h.nlmsg_flags = flags;
  h.nlmsg_seq = seq;
  h.nlmsg_pid = 0;
  putRaw(&h, sizeof h);
}

void MessageWriter::beginGenl(uint16_t type, uint16_t flags, uint32_t seq, uint8_t cmd, uint8_t version) {
  beginMessage(type, flags, seq);
  genlmsghdr g{};
  g.cmd = cmd;
  g.version = version;
  putRaw(&g, sizeof g);
}

void MessageWriter::endMessage() {
  assert(open_ != kNone);
  uint32_t len = static_cast<uint32_t>(buf_.size() - open_);
  std::memcpy(buf_.data() + open_, &len, sizeof len);
  last_ = open_;
  open_ = kNone;
  ++messages_;
}

void MessageWriter::addFlagsToLast(uint16_t flags) {
  if (last_ == kNone) return;
  uint8_t* p = buf_.data() + last_ + offsetof(nlmsghdr, nlmsg_flags);
  uint16_t f = load<uint16_t>(p);
  f |= flags;
  std::memcpy(p, &f, sizeof f);
}

void MessageWriter::truncate(size_t mark, size_t messagesAtMark) {
  assert(mark <= buf_.size());
  buf_.resize(mark);
  messages_ = messagesAtMark;
  if (open_ != kNone && open_ >= mark) open_ = kNone;
  // The last complete message is unknown after a rollback; walk to find it.
  last_ = kNone;
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= buf_.size()) {
    uint32_t len = load<uint32_t>(buf_.data() + off);
    if (len < sizeof(nlmsghdr) || off + len > buf_.size()) break;
    last_ = off;
    off += align4(len);
  }
}

void MessageWriter::pad() { buf_.resize(align4(buf_.size()), 0); }

void MessageWriter::putRaw(const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  buf_.insert(buf_.end(), p, p + len);
  pad();
}

void MessageWriter::putBytes(uint16_t type, const void* data, size_t len) {
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(sizeof(nlattr) + len);
  a.nla_type = type;
  const auto* h = reinterpret_cast<const uint8_t*>(&a);
  buf_.insert(buf_.end(), h, h + sizeof a);
  if (len > 0) {
    const auto* p = static_cast<const uint8_t*>(data);
    buf_.insert(buf_.end(), p, p + len);
  }
  pad();
}

void MessageWriter::putBytes(uint16_t type, Bytes data) { putBytes(type, data.data(), data.size()); }

void MessageWriter::putBe16(uint16_t type, uint16_t hostOrder) { putU16(type, htons(hostOrder)); }
void MessageWriter::putBe32(uint16_t type, uint32_t hostOrder) { putU32(type, htonl(hostOrder)); }

void MessageWriter::putString(uint16_t type, std::string_view s) {
  nlattr a{};
  a.nla_len = static_cast<uint16_t>(sizeof(nlattr) + s.size() + 1);
  a.nla_type = type;
  const auto* h = reinterpret_cast<const uint8_t*>(&a);
  buf_.insert(buf_.end(), h, h + sizeof a);
  buf_.insert(buf_.end(), s.begin(), s.end());
  buf_.push_back(0);
  pad();
}

size_t MessageWriter::beginNest(uint16_t type) {
  size_t start = buf_.size();
  putBytes(type, nullptr, 0);
  return start;
}

void MessageWriter::endNest(size_t handle) {
  uint16_t len = static_cast<uint16_t>(buf_.size() - handle);
  std::memcpy(buf_.data() + handle, &len, sizeof len);
}

std::optional<uint16_t> readBe16(Bytes b) {
  auto v = readScalar<uint16_t>(b);
  if (!v) return std::nullopt;
  return ntohs(*v);
}

std::optional<uint32_t> readBe32(Bytes b) {
  auto v = readScalar<uint32_t>(b);
  if (!v) return std::nullopt;
  return ntohl(*v);
}

std::string readString(Bytes b) {
  const auto* p = reinterpret_cast<const char*>(b.data());
  size_t n = 0;
  while (n < b.size() && p[n] != '\0') ++n;
  return std::string(p, n);
}

namespace {

Status truncatedAttr(size_t left) {
  return Status::error(Code::kParse, "truncated attribute header: " + std::to_string(left) + " bytes left");
}

Status malformedAttr(uint16_t type, uint16_t len, size_t left) {
  return Status::error(Code::kParse, "malformed attribute type " + std::to_string(type & NLA_TYPE_MASK) +
                                         ": length " + std::to_string(len) + " with " + std::to_string(left) +
                                         " bytes left");
}

}  // namespace

std::optional<Attr> AttrIter::next() {
  if (rest_.empty() || !error_.isOk()) return std::nullopt;
  if (rest_.size() < sizeof(nlattr)) {
    error_ = truncatedAttr(rest_.size());
    return std::nullopt;
  }
  uint16_t len = load<uint16_t>(rest_.data());
  uint16_t type = load<uint16_t>(rest_.data() + 2);
  if (len < sizeof(nlattr) || len > rest_.size()) {
    error_ = malformedAttr(type, len, rest_.size());
    return std::nullopt;
  }
  Attr a{static_cast<uint16_t>(type & NLA_TYPE_MASK), rest_.subspan(sizeof(nlattr), len - sizeof(nlattr))};
  // The last attribute of a run may lack its trailing padding.
  rest_ = rest_.subspan(std::min(align4(len), rest_.size()));
  return a;
}

// AttrIter's walk without its per-attribute optional and Status: the table
// read decodes about 20 attributes for each of 100,000s of real servers, and
// this loop was a tenth of the reading thread's time in the VM.
Status parseAttrs(Bytes run, std::span<std::optional<Bytes>> table) {
  for (auto& t : table) t.reset();
  const uint8_t* p = run.data();
  size_t left = run.size();
  while (left != 0) {
    if (left < sizeof(nlattr)) return truncatedAttr(left);
    const uint16_t len = load<uint16_t>(p);
    const uint16_t type = load<uint16_t>(p + 2);
    if (len < sizeof(nlattr) || len > left) return malformedAttr(type, len, left);
    const uint16_t t = type & NLA_TYPE_MASK;
    if (t < table.size()) table[t] = Bytes(p + sizeof(nlattr), len - sizeof(nlattr));
    const size_t step = std::min(align4(len), left);  // the last attribute may lack its padding
    p += step;
    left -= step;
  }
  return Status::ok();
}

std::optional<Message> MessageIter::next() {
  if (rest_.empty() || !error_.isOk()) return std::nullopt;
  if (rest_.size() < sizeof(nlmsghdr)) {
    error_ = Status::error(Code::kParse, "truncated netlink header: " + std::to_string(rest_.size()) + " bytes left");
    return std::nullopt;
  }
  nlmsghdr h = load<nlmsghdr>(rest_.data());
  if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > rest_.size()) {
    error_ = Status::error(Code::kParse, "malformed netlink message: length " + std::to_string(h.nlmsg_len) +
                                             " with " + std::to_string(rest_.size()) + " bytes left");
    return std::nullopt;
  }
  Message m;
  m.type = h.nlmsg_type;
  m.flags = h.nlmsg_flags;
  m.seq = h.nlmsg_seq;
  m.pid = h.nlmsg_pid;
  m.payload = rest_.subspan(sizeof(nlmsghdr), h.nlmsg_len - sizeof(nlmsghdr));
  rest_ = rest_.subspan(std::min(align4(h.nlmsg_len), rest_.size()));
  return m;
}

StatusOr<Ack> parseAck(const Message& m) {
  if (m.type != NLMSG_ERROR || m.payload.size() < sizeof(nlmsgerr)) {
    return Status::error(Code::kParse,
                         "malformed netlink error message (" + std::to_string(m.payload.size()) + " bytes)");
  }
  nlmsgerr e = load<nlmsgerr>(m.payload.data());
  Ack ack;
  ack.error = -e.error;
  ack.seq = e.msg.nlmsg_seq;
  if (m.flags & NLM_F_ACK_TLVS) {
    // With NETLINK_CAP_ACK the request is not echoed, so the TLVs follow nlmsgerr
    // directly; otherwise they follow the echoed request.
    size_t off = sizeof(nlmsgerr);
    if (!(m.flags & NLM_F_CAPPED)) off = sizeof(int) + align4(e.msg.nlmsg_len);
    if (off <= m.payload.size()) {
      std::optional<Bytes> tlv[NLMSGERR_ATTR_OFFS + 1];
      // A malformed TLV section only loses the extra text, never the errno.
      (void)parseAttrs(m.payload.subspan(off), tlv);
      if (tlv[NLMSGERR_ATTR_MSG]) ack.extMessage = readString(*tlv[NLMSGERR_ATTR_MSG]);
      if (tlv[NLMSGERR_ATTR_OFFS]) ack.extOffset = readScalar<uint32_t>(*tlv[NLMSGERR_ATTR_OFFS]);
    }
  }
  return ack;
}

int parseDoneError(const Message& m) {
  auto v = m.payload.size() >= sizeof(int) ? readScalar<int>(m.payload.first(sizeof(int))) : std::optional<int>(0);
  return v && *v < 0 ? -*v : 0;
}

StatusOr<GenlView> parseGenl(const Message& m) {
  if (m.payload.size() < GENL_HDRLEN) {
    return Status::error(Code::kParse, "generic netlink message too short (" + std::to_string(m.payload.size()) +
                                           " bytes)");
  }
  GenlView g;
  g.cmd = m.payload[0];
  g.version = m.payload[1];
  g.attrs = m.payload.subspan(GENL_HDRLEN);
  return g;
}

}  // namespace kipvs::netlink
