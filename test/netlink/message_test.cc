#include <random>
#include <vector>

#include <doctest/doctest.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "netlink/message.h"

using namespace kipvs;
using namespace kipvs::netlink;

namespace {

std::vector<uint8_t> copy(Bytes b) { return std::vector<uint8_t>(b.begin(), b.end()); }

// An NLMSG_ERROR message as the kernel builds it (with or without CAP_ACK).
std::vector<uint8_t> errorMessage(int err, uint32_t seq, bool capped, const char* ext) {
  MessageWriter w;
  uint16_t flags = capped ? NLM_F_CAPPED : 0;
  if (ext) flags |= NLM_F_ACK_TLVS;
  w.beginMessage(NLMSG_ERROR, flags, seq);
  nlmsgerr e{};
  e.error = -err;
  e.msg.nlmsg_seq = seq;
  e.msg.nlmsg_type = 0x20;
  e.msg.nlmsg_len = capped ? sizeof(nlmsghdr) : sizeof(nlmsghdr) + 8;
  w.putRaw(&e, sizeof e);
  if (!capped) {
    uint8_t echoed[8] = {1, 1, 0, 0, 0, 0, 0, 0};  // the echoed request payload
    w.putRaw(echoed, sizeof echoed);
  }
  if (ext) w.putString(NLMSGERR_ATTR_MSG, ext);
  w.endMessage();
  return copy(w.bytes());
}

}  // namespace

TEST_CASE("MessageWriter frames messages and attributes with 4-byte padding") {
  MessageWriter w;
  w.beginGenl(0x1234, NLM_F_REQUEST, 9, 3, 1);
  w.putU8(1, 0xab);
  w.putString(2, "rr");
  size_t nest = w.beginNest(3);
  w.putBe16(1, 0x1f90);
  w.endNest(nest);
  w.endMessage();

  const std::vector<uint8_t> want = {
      // nlmsghdr: len 48, type 0x1234, flags REQUEST, seq 9, pid 0
      48, 0, 0, 0, 0x34, 0x12, 0x01, 0x00, 9, 0, 0, 0, 0, 0, 0, 0,
      // genlmsghdr: cmd 3, version 1
      3, 1, 0, 0,
      // u8 attr: len 5, type 1, value, 3 pad
      5, 0, 1, 0, 0xab, 0, 0, 0,
      // string: len 7 ("rr\0"), type 2, 1 pad
      7, 0, 2, 0, 'r', 'r', 0, 0,
      // nest: len 12, type 3, holding a be16 attr (len 6) + 2 pad
      12, 0, 3, 0, 6, 0, 1, 0, 0x1f, 0x90, 0, 0};
  CHECK(copy(w.bytes()) == want);
  CHECK(w.messageCount() == 1);
}

TEST_CASE("MessageWriter batches, flags the last message and rolls back") {
  MessageWriter w;
  for (uint32_t seq = 1; seq <= 3; ++seq) {
    w.beginGenl(0x20, NLM_F_REQUEST, seq, 1, 1);
    w.putU32(1, seq);
    w.endMessage();
  }
  size_t mark = w.size();
  w.beginGenl(0x20, NLM_F_REQUEST, 4, 1, 1);
  w.putU32(1, 4);
  w.endMessage();
  CHECK(w.messageCount() == 4);
  w.truncate(mark, 3);
  CHECK(w.messageCount() == 3);
  w.addFlagsToLast(NLM_F_ACK);

  MessageIter it(w.bytes());
  std::vector<uint32_t> seqs;
  std::vector<uint16_t> flags;
  while (auto m = it.next()) {
    seqs.push_back(m->seq);
    flags.push_back(m->flags);
    auto g = parseGenl(*m);
    REQUIRE(g.isOk());
    std::optional<Bytes> attrs[2];
    REQUIRE(parseAttrs(g->attrs, attrs).isOk());
    REQUIRE(attrs[1]);
    CHECK(readScalar<uint32_t>(*attrs[1]) == m->seq);
  }
  CHECK(it.error().isOk());
  CHECK(seqs == std::vector<uint32_t>{1, 2, 3});
  CHECK(flags == std::vector<uint16_t>{NLM_F_REQUEST, NLM_F_REQUEST, NLM_F_REQUEST | NLM_F_ACK});

  w.clear();
  CHECK(w.size() == 0);
  CHECK(w.messageCount() == 0);
}

TEST_CASE("AttrIter rejects truncated and undersized attributes") {
  SUBCASE("length beyond the buffer") {
    const uint8_t b[] = {12, 0, 1, 0, 1, 2, 3, 4};
    AttrIter it{Bytes(b)};
    CHECK_FALSE(it.next().has_value());
    CHECK(it.error().code() == Code::kParse);
  }
  SUBCASE("length below the header size") {
    const uint8_t b[] = {2, 0, 1, 0};
    AttrIter it{Bytes(b)};
    CHECK_FALSE(it.next().has_value());
    CHECK(it.error().code() == Code::kParse);
  }
  SUBCASE("a partial header after a good attribute") {
    const uint8_t b[] = {8, 0, 1, 0, 1, 2, 3, 4, 8, 0};
    AttrIter it{Bytes(b)};
    auto a = it.next();
    REQUIRE(a);
    CHECK(a->type == 1);
    CHECK(a->data.size() == 4);
    CHECK_FALSE(it.next().has_value());
    CHECK(it.error().code() == Code::kParse);
  }
  SUBCASE("a last attribute without trailing padding is fine") {
    const uint8_t b[] = {5, 0, 1, 0, 7};
    AttrIter it{Bytes(b)};
    auto a = it.next();
    REQUIRE(a);
    CHECK(a->data.size() == 1);
    CHECK_FALSE(it.next().has_value());
    CHECK(it.error().isOk());
  }
  SUBCASE("NESTED and BYTEORDER bits are masked off the type") {
    const uint8_t b[] = {4, 0, 2, 0x80 | 0x40};
    AttrIter it{Bytes(b)};
    auto a = it.next();
    REQUIRE(a);
    CHECK(a->type == 2);
  }
}

TEST_CASE("parseAttrs keeps the last of each type and ignores unknown types") {
  MessageWriter w;
  w.putU16(1, 10);
  w.putU16(1, 11);
  w.putU32(200, 5);  // beyond the table: a newer kernel's attribute
  std::optional<Bytes> t[3];
  REQUIRE(parseAttrs(w.bytes(), t).isOk());
  REQUIRE(t[1]);
  CHECK(readScalar<uint16_t>(*t[1]) == 11);
  CHECK_FALSE(t[2]);
  CHECK_FALSE(readScalar<uint32_t>(*t[1]).has_value());  // wrong length -> nullopt
}

// parseAttrs walks the run itself: it must give what AttrIter's walk gives
// (the last attribute of each type, the same error), on any bytes.
TEST_CASE("parseAttrs agrees with AttrIter on random runs") {
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> b;
    const int attrs = int(rng() % 6);
    for (int a = 0; a < attrs; ++a) {
      const uint16_t payload = uint16_t(rng() % 9);
      uint16_t len = uint16_t(4 + payload);
      if (rng() % 8 == 0) len = uint16_t(rng() % 24);  // sometimes a wrong length
      const uint16_t type = uint16_t((rng() % 6) | (rng() % 4 == 0 ? 0x8000 : 0));
      b.push_back(uint8_t(len & 0xff));
      b.push_back(uint8_t(len >> 8));
      b.push_back(uint8_t(type & 0xff));
      b.push_back(uint8_t(type >> 8));
      for (int k = 0; k < payload; ++k) b.push_back(uint8_t(rng()));
      while (b.size() % 4 && rng() % 4) b.push_back(0);  // padding, sometimes missing
    }
    if (rng() % 5 == 0 && !b.empty()) b.resize(rng() % b.size());  // cut anywhere
    CAPTURE(i);
    std::optional<Bytes> want[4], got[4];
    AttrIter it{Bytes(b)};
    while (auto a = it.next()) {
      if (a->type < 4) want[a->type] = a->data;
    }
    Status st = parseAttrs(Bytes(b), got);
    CHECK(st.code() == it.error().code());
    CHECK(st.message() == it.error().message());
    if (!st.isOk()) continue;  // the table's content is unspecified on error
    for (int t = 0; t < 4; ++t) {
      REQUIRE(got[t].has_value() == want[t].has_value());
      if (got[t]) CHECK((got[t]->data() == want[t]->data() && got[t]->size() == want[t]->size()));
    }
  }
}

TEST_CASE("MessageIter splits a datagram and rejects bad lengths") {
  MessageWriter w;
  w.beginMessage(NLMSG_DONE, NLM_F_MULTI, 5);
  int zero = 0;
  w.putRaw(&zero, sizeof zero);
  w.endMessage();
  auto bytes = copy(w.bytes());
  bytes.insert(bytes.end(), bytes.begin(), bytes.end());  // two messages

  MessageIter it{Bytes(bytes)};
  int n = 0;
  while (auto m = it.next()) {
    CHECK(m->type == NLMSG_DONE);
    CHECK(parseDoneError(*m) == 0);
    ++n;
  }
  CHECK(n == 2);
  CHECK(it.error().isOk());

  bytes[0] = 200;  // nlmsg_len beyond the datagram
  MessageIter bad{Bytes(bytes)};
  CHECK_FALSE(bad.next().has_value());
  CHECK(bad.error().code() == Code::kParse);

  const uint8_t shortHdr[] = {16, 0, 0, 0, 3, 0};
  MessageIter tiny{Bytes(shortHdr)};
  CHECK_FALSE(tiny.next().has_value());
  CHECK(tiny.error().code() == Code::kParse);
}

TEST_CASE("parseDoneError returns the dump's errno") {
  MessageWriter w;
  w.beginMessage(NLMSG_DONE, NLM_F_MULTI, 5);
  int err = -EINVAL;
  w.putRaw(&err, sizeof err);
  w.endMessage();
  MessageIter it(w.bytes());
  auto m = it.next();
  REQUIRE(m);
  CHECK(parseDoneError(*m) == EINVAL);
}

TEST_CASE("parseAck keeps the raw errno and the ext-ack message") {
  SUBCASE("capped, with a message") {
    auto b = errorMessage(ESRCH, 42, true, "no such service");
    MessageIter it{Bytes(b)};
    auto m = it.next();
    REQUIRE(m);
    auto ack = parseAck(*m);
    REQUIRE(ack.isOk());
    CHECK(ack->error == ESRCH);  // not folded to ENOENT
    CHECK(ack->seq == 42);
    CHECK(ack->extMessage == "no such service");
  }
  SUBCASE("not capped: TLVs after the echoed request") {
    auto b = errorMessage(ENOENT, 7, false, "missing");
    MessageIter it{Bytes(b)};
    auto ack = parseAck(*it.next());
    REQUIRE(ack.isOk());
    CHECK(ack->error == ENOENT);
    CHECK(ack->extMessage == "missing");
  }
  SUBCASE("plain ack") {
    auto b = errorMessage(0, 3, true, nullptr);
    MessageIter it{Bytes(b)};
    auto ack = parseAck(*it.next());
    REQUIRE(ack.isOk());
    CHECK(ack->error == 0);
    CHECK(ack->extMessage.empty());
  }
  SUBCASE("too short") {
    Message m;
    m.type = NLMSG_ERROR;
    const uint8_t b[] = {0xfd, 0xff, 0xff, 0xff};
    m.payload = Bytes(b);
    CHECK(parseAck(m).status().code() == Code::kParse);
  }
}

TEST_CASE("parseGenl needs a whole genl header") {
  Message m;
  const uint8_t b[] = {1, 1};
  m.payload = Bytes(b);
  CHECK(parseGenl(m).status().code() == Code::kParse);
  const uint8_t ok[] = {4, 1, 0, 0, 4, 0, 9, 0};
  m.payload = Bytes(ok);
  auto g = parseGenl(m);
  REQUIRE(g.isOk());
  CHECK(g->cmd == 4);
  CHECK(g->attrs.size() == 4);
}

TEST_CASE("readBe16/readBe32/readString") {
  const uint8_t p[] = {0x1f, 0x90};
  CHECK(readBe16(Bytes(p)) == 8080);
  const uint8_t m[] = {0xff, 0xff, 0xff, 0x00};
  CHECK(readBe32(Bytes(m)) == 0xffffff00u);
  CHECK_FALSE(readBe16(Bytes(m)).has_value());
  const uint8_t s[] = {'w', 'r', 'r', 0, 'x'};
  CHECK(readString(Bytes(s)) == "wrr");
  const uint8_t unterminated[] = {'r', 'r'};
  CHECK(readString(Bytes(unterminated)) == "rr");
}
