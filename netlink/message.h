#pragma once
// Netlink messages as plain bytes: a writer that appends many requests to one
// reused buffer (a batch costs no per-request allocation, unlike a fresh 4 KB
// nl_msg each), and bounds-checked views for parsing what the kernel sends.
// No socket here, so everything is testable in memory.

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "netlink/status.h"

namespace kipvs::netlink {

using Bytes = std::span<const uint8_t>;

// Appends netlink messages and their attributes to one growing buffer.
// Usage: beginGenl(...); put*(...); beginNest/endNest; endMessage(); repeat.
class MessageWriter {
 public:
  // Drops the content, keeps the capacity.
  void clear();
  Bytes bytes() const { return Bytes(buf_.data(), buf_.size()); }
  size_t size() const { return buf_.size(); }
  size_t messageCount() const { return messages_; }

  // Starts a message: nlmsghdr (pid 0: the kernel fills the sender) followed
  // by a genlmsghdr. Must be closed by endMessage().
  void beginGenl(uint16_t type, uint16_t flags, uint32_t seq, uint8_t cmd, uint8_t version);
  // Starts a message with a bare nlmsghdr (payload written with putRaw).
  void beginMessage(uint16_t type, uint16_t flags, uint32_t seq);
  void endMessage();
  // ORs flags into the last completed message (e.g. NLM_F_ACK on the one that closes a batch).
  void addFlagsToLast(uint16_t flags);
  // Forgets everything written after `mark` (a previous size()), e.g. a
  // message that would overflow the batch. Only whole messages may be dropped.
  void truncate(size_t mark, size_t messagesAtMark);

  void putRaw(const void* data, size_t len);  // unframed payload bytes, padded to 4
  void putBytes(uint16_t type, Bytes data);
  void putBytes(uint16_t type, const void* data, size_t len);
  void putU8(uint16_t type, uint8_t v) { putBytes(type, &v, sizeof v); }
  void putU16(uint16_t type, uint16_t v) { putBytes(type, &v, sizeof v); }
  void putU32(uint16_t type, uint32_t v) { putBytes(type, &v, sizeof v); }
  void putU64(uint16_t type, uint64_t v) { putBytes(type, &v, sizeof v); }
  void putBe16(uint16_t type, uint16_t hostOrder);  // network byte order on the wire
  void putBe32(uint16_t type, uint32_t hostOrder);
  void putString(uint16_t type, std::string_view s);  // NUL-terminated
  // Returns a handle for endNest. No NLA_F_NESTED bit: IPVS (like ipvsadm)
  // uses the legacy unflagged nests, and the kernel ignores the bit anyway.
  size_t beginNest(uint16_t type);
  void endNest(size_t handle);

 private:
  void pad();
  std::vector<uint8_t> buf_;
  size_t open_ = kNone;       // offset of the message being written
  size_t last_ = kNone;       // offset of the last completed message
  size_t messages_ = 0;
  static constexpr size_t kNone = static_cast<size_t>(-1);
};

// Unaligned-safe scalar reads; nullopt when the length is not exactly right.
template <typename T>
std::optional<T> readScalar(Bytes b) {
  if (b.size() != sizeof(T)) return std::nullopt;
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}
std::optional<uint16_t> readBe16(Bytes b);
std::optional<uint32_t> readBe32(Bytes b);
// Up to the first NUL (or the whole payload if there is none).
std::string readString(Bytes b);

// One attribute: type with the NESTED/BYTEORDER bits masked off.
struct Attr {
  uint16_t type = 0;
  Bytes data;
};

// Iterates a run of attributes. Stops at the first malformed header (length
// below 4 or beyond the buffer) and remembers it: check error() after the loop.
class AttrIter {
 public:
  explicit AttrIter(Bytes run) : rest_(run) {}
  // The next attribute, or nullopt at the end or on malformed input.
  std::optional<Attr> next();
  // kParse if the run was malformed; ok otherwise.
  Status error() const { return error_; }

 private:
  Bytes rest_;
  Status error_;
};

// Like nla_parse without a policy: table[type] = the last attribute of that
// type; types >= table.size() are ignored (newer kernels add attributes).
Status parseAttrs(Bytes run, std::span<std::optional<Bytes>> table);

// One netlink message inside a received datagram.
struct Message {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t seq = 0;
  uint32_t pid = 0;
  Bytes payload;  // after the nlmsghdr, nlmsg_len - 16 bytes
};

// Iterates the messages of one datagram; same error convention as AttrIter.
class MessageIter {
 public:
  explicit MessageIter(Bytes datagram) : rest_(datagram) {}
  std::optional<Message> next();
  Status error() const { return error_; }

 private:
  Bytes rest_;
  Status error_;
};

// An NLMSG_ERROR message: an ack (error 0) or a failure.
struct Ack {
  int error = 0;              // positive errno; 0 for a plain ack
  uint32_t seq = 0;           // of the request it answers
  std::string extMessage;     // NLMSGERR_ATTR_MSG when the kernel gave one
  std::optional<uint32_t> extOffset;  // NLMSGERR_ATTR_OFFS
};
StatusOr<Ack> parseAck(const Message& m);

// NLMSG_DONE carries the dump's final error code (0 or negative errno).
// Returns it as a positive errno (0 = clean end).
int parseDoneError(const Message& m);

struct GenlView {
  uint8_t cmd = 0;
  uint8_t version = 0;
  Bytes attrs;  // after the genlmsghdr
};
StatusOr<GenlView> parseGenl(const Message& m);

}  // namespace kipvs::netlink
