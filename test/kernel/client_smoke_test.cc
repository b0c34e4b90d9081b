// NetlinkIpvsClient against a real IPVS kernel: per-op errnos out of one
// batch, dumps vs ipvsadm, buffer overflow (ENOBUFS) and dump pipelining.
// Each case runs in a fresh network namespace (test/kernel/netns.h).
#include <doctest/doctest.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ipvs/codec.h"
#include "ipvs/netlink_client.h"
#include "netlink/genl_socket.h"
#include "test/kernel/netns.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

Address A(const char* s) { return *Address::parse(s); }

// A fresh namespace and a client on it.
std::unique_ptr<NetlinkIpvsClient> freshClient(NetlinkIpvsClient::Options options = {}) {
  kerneltest::enterFreshNetns();
  auto c = NetlinkIpvsClient::create(options);
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  REQUIRE((*c)->flush().isOk());
  return std::move(*c);
}

std::string shell(const char* cmd) {
  std::string out;
  FILE* p = popen(cmd, "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::set<std::string> lineSet(const std::string& s) {
  std::set<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    std::string line = s.substr(start, end - start);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) out.insert(line);
    start = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("kernel: info and timeouts") {
  auto c = freshClient();
  auto info = c->info();
  REQUIRE_MESSAGE(info.isOk(), info.status().toString());
  CHECK(info->version == IP_VS_VERSION_CODE);
  CHECK(info->connTableSize > 0);

  REQUIRE(c->setTimeouts(Timeouts{901, 121, 301}).isOk());
  auto t = c->getTimeouts();
  REQUIRE(t.isOk());
  CHECK(*t == Timeouts{901, 121, 301});
  REQUIRE(c->setTimeouts(Timeouts{0, 0, 302}).isOk());  // zero: unchanged
  CHECK(*c->getTimeouts() == Timeouts{901, 121, 302});
}

TEST_CASE("kernel: one Status per op in a batch, with the raw errno") {
  auto c = freshClient();
  auto a = ServiceKey::tcp(A("10.0.0.1"), 80);
  auto missing = ServiceKey::tcp(A("10.0.0.99"), 80);
  auto v6 = ServiceKey::make(Protocol::kUdp, A("fd00::1"), 53);
  auto fwm = ServiceKey::mark(Family::kV4, 7);
  ServiceSpec rr;
  rr.netmask = 0xffffffffu;
  ServiceSpec rr6;
  rr6.netmask = 128;
  DestSpec masq;
  DestSpec gue{FwdMethod::kTunnel, 3, 0, 0, TunnelType::kGue, 6080, kTunFlagCsum};
  ServiceSpec badSched = rr;
  badSched.scheduler = "nosuchsched";

  std::vector<Op> ops = {
      Op::addService(a, rr),                                          // 0 ok
      Op::addService(a, rr),                                          // 1 EEXIST
      Op::addDest(a, DestKey{A("172.16.0.1"), 80}, masq),             // 2 ok
      Op::addDest(missing, DestKey{A("172.16.0.1"), 80}, masq),       // 3 ESRCH
      Op::deleteDest(a, DestKey{A("172.16.0.9"), 80}),                // 4 ENOENT
      Op::updateDest(a, DestKey{A("172.16.0.8"), 80}, masq),          // 5 ENOENT
      Op::deleteService(missing),                                     // 6 ESRCH
      Op::addService(v6, rr6),                                        // 7 ok
      Op::addDest(v6, DestKey{A("fd00:1::2"), 5353}, masq),           // 8 ok
      Op::addService(fwm, rr),                                        // 9 ok
      Op::addDest(a, DestKey{A("172.16.0.2"), 80}, gue),              // 10 ok
      Op::addService(ServiceKey::tcp(A("10.0.0.2"), 80), badSched),   // 11 ENOENT (no such scheduler)
      Op::addDest(a, DestKey{A("172.16.0.1"), 80}, masq),             // 12 EEXIST
      Op::updateDest(a, DestKey{A("172.16.0.1"), 80}, DestSpec{FwdMethod::kMasq, 5, 0, 0, {}, 0, 0}),  // 13 ok
  };
  const std::vector<int> want = {0, EEXIST, 0, ESRCH, ENOENT, ENOENT, ESRCH, 0, 0, 0, 0, ENOENT, EEXIST, 0};
  const uint64_t writesBefore = c->writeCount();
  const auto io0 = c->ioCounters();
  auto results = c->apply(ops);
  const auto io1 = c->ioCounters();
  REQUIRE(results.size() == ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    CAPTURE(i);
    CAPTURE(results[i].toString());
    CHECK(results[i].errnum() == want[i]);
    CHECK(results[i].isOk() == (want[i] == 0));
    if (!results[i].isOk()) {
      CHECK(results[i].code() == Code::kKernel);
      CHECK(results[i].message().find(ops[i].toString()) != std::string::npos);
    }
  }
  CHECK(c->writeCount() - writesBefore == ops.size());
  // The whole batch in one sendmsg, and one family lookup after it: some of
  // its ops met ENOENT, which a reloaded ip_vs would give them too.
  CHECK(io1.sends - io0.sends == 2);
  CHECK(io1.messagesSent - io0.messagesSent == ops.size() + 1);
  MESSAGE("batch of " << ops.size() << " ops: sends " << (io1.sends - io0.sends) << ", receives "
                      << (io1.receives - io0.receives));
  MESSAGE("example error: " << results[3].toString());

  // The dump agrees with what was applied.
  auto table = c->dumpTable();
  REQUIRE_MESSAGE(table.isOk(), table.status().toString());
  REQUIRE(table->services.size() == 3);
  const ServiceState& sa = table->services.at(a);
  CHECK(sa.spec.scheduler == "rr");
  CHECK(sa.spec.flags == 0);  // HASHED masked
  REQUIRE(sa.dests.size() == 2);
  CHECK(sa.dests.at(DestKey{A("172.16.0.1"), 80}).spec.weight == 5);
  CHECK(sa.dests.at(DestKey{A("172.16.0.2"), 80}).spec == gue);
  CHECK(table->services.at(v6).dests.size() == 1);
  CHECK(table->services.count(fwm) == 1);

  // ipvsadm is the independent witness.
  auto saved = lineSet(shell("ipvsadm -Sn"));
  for (const char* want : {"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.1:80 -m -w 5",
                           "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -i -w 3 --tun-type gue --tun-port 6080 --tun-nocsum",
                           "-A -u [fd00::1]:53 -s rr", "-a -u [fd00::1]:53 -r [fd00:1::2]:5353 -m -w 1",
                           "-A -f 7 -s rr"}) {
    CAPTURE(want);
    bool found = saved.count(want) > 0;
    if (!found && std::string(want).find("--tun") != std::string::npos) {
      // ipvsadm versions differ in how they print tunnel options; the address is what matters.
      for (const auto& l : saved) found |= l.find("-r 172.16.0.2:80 -i -w 3") != std::string::npos;
    }
    CHECK_MESSAGE(found, shell("ipvsadm -Sn"));
  }
  size_t adds = 0, dests = 0;
  for (const auto& l : saved) {
    adds += l.rfind("-A ", 0) == 0;
    dests += l.rfind("-a ", 0) == 0;
  }
  CHECK(adds == table->services.size());
  CHECK(dests == table->destCount());
}

TEST_CASE("kernel: dumpService, updates, zero") {
  auto c = freshClient();
  auto a = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec spec;
  spec.netmask = 0xffffffffu;
  REQUIRE(c->addService(a, spec).isOk());
  for (int j = 1; j <= 3; ++j) {
    DestKey dk{Address::v4(0xAC100000u + static_cast<uint32_t>(j)), 8080};
    REQUIRE(c->addDest(a, dk, DestSpec{}).isOk());
  }
  auto one = c->dumpService(a);
  REQUIRE_MESSAGE(one.isOk(), one.status().toString());
  REQUIRE(one->has_value());
  CHECK((*one)->dests.size() == 3);
  CHECK((*one)->spec.scheduler == "rr");

  auto none = c->dumpService(ServiceKey::tcp(A("10.9.9.9"), 80));
  REQUIRE(none.isOk());
  CHECK_FALSE(none->has_value());

  ServiceSpec persistent{"wrr", kSvcFlagPersistent, 600, 0xffffff00u, ""};
  REQUIRE(c->updateService(a, persistent).isOk());
  auto updated = c->dumpService(a);
  REQUIRE(updated.isOk());
  REQUIRE(updated->has_value());
  CHECK((*updated)->spec == persistent);

  CHECK(c->zero(a).isOk());
  CHECK(c->zero(std::nullopt).isOk());
  Status z = c->zero(ServiceKey::tcp(A("10.9.9.9"), 80));
  CHECK(z.errnum() == ESRCH);

  REQUIRE(c->deleteService(a).isOk());
  CHECK(c->deleteService(a).errnum() == ESRCH);
  CHECK(c->dumpTable()->services.empty());
}

TEST_CASE("kernel: a service whose dests span many page-sized dump datagrams reads back whole") {
  // Per-service reads use page-sized receive slots (readSocket()): 1,000 v6
  // dests with counters are about 100 datagrams, and at most 16 per recvmmsg.
  // The full read spreads the dests dumps over two sockets (any table size here).
  NetlinkIpvsClient::Options parallel;
  parallel.dumpReaders = 2;
  parallel.parallelDumpMinServices = 0;
  auto c = freshClient(parallel);
  auto v6 = ServiceKey::tcp(A("fd00:96::1"), 443);
  auto v4 = ServiceKey::tcp(A("10.0.0.1"), 80);
  ServiceSpec rr6;
  rr6.netmask = 128;
  ServiceSpec rr4;
  rr4.netmask = 0xffffffffu;
  std::vector<Op> ops{Op::addService(v6, rr6), Op::addService(v4, rr4)};
  for (uint32_t j = 0; j < 1000; ++j) {
    auto a = A("fd00:1::");
    a.bytes[14] = static_cast<uint8_t>((j + 1) >> 8);
    a.bytes[15] = static_cast<uint8_t>(j + 1);
    ops.push_back(Op::addDest(v6, DestKey{a, static_cast<uint16_t>(8000 + j % 7)}, DestSpec{}));
  }
  ops.push_back(Op::addDest(v4, DestKey{A("172.16.0.1"), 80}, DestSpec{}));
  for (const Status& s : c->apply(ops)) REQUIRE_MESSAGE(s.isOk(), s.toString());

  const auto io0 = c->ioCounters();
  auto one = c->dumpService(v6);
  const auto io1 = c->ioCounters();
  REQUIRE_MESSAGE(one.isOk(), one.status().toString());
  REQUIRE(one->has_value());
  CHECK((*one)->dests.size() == 1000);
  CHECK(io1.datagrams - io0.datagrams > 16);  // really many datagrams
  CHECK(io1.reopens == io0.reopens);

  auto table = c->dumpTable();
  REQUIRE_MESSAGE(table.isOk(), table.status().toString());
  REQUIRE(table->services.size() == 2);
  CHECK(table->services.at(v6).dests.size() == 1000);
  CHECK(table->services.at(v4).dests.size() == 1);
  CHECK(lineSet(shell("ipvsadm -Sn | grep -c -- '-a -t \\[fd00:96::1\\]:443'")) == std::set<std::string>{"1000"});
}

namespace {

// The same services, specs, real servers and counters in both.
void checkSameTable(const Table& a, const Table& b) {
  REQUIRE(a.services.size() == b.services.size());
  for (const auto& [k, st] : a.services) {
    CAPTURE(k.toString());
    auto it = b.services.find(k);
    REQUIRE(it != b.services.end());
    CHECK(st.spec == it->second.spec);
    REQUIRE(st.dests.size() == it->second.dests.size());
    for (const auto& [dk, ds] : st.dests) {
      auto jt = it->second.dests.find(dk);
      REQUIRE(jt != it->second.dests.end());
      CHECK(ds.spec == jt->second.spec);
      CHECK(ds.counters == jt->second.counters);
    }
  }
}

// A full read by a new client with `options`, checked equal to `expected`; how it read.
NetlinkIpvsClient::ReadReport readEqual(const NetlinkIpvsClient::Options& options, const Table& expected) {
  auto c = NetlinkIpvsClient::create(options);
  REQUIRE(c.isOk());
  auto t = (*c)->dumpTable();
  REQUIRE_MESSAGE(t.isOk(), t.status().toString());
  checkSameTable(*t, expected);
  return (*c)->lastRead();
}

}  // namespace

TEST_CASE("kernel: a full read gives the same table on one socket and spread over several") {
  NetlinkIpvsClient::Options two;
  two.dumpReaders = 2;
  two.parallelDumpMinServices = 0;
  auto c = freshClient(two);
  auto plain = NetlinkIpvsClient::create();  // one socket, one thread
  REQUIRE(plain.isOk());
  NetlinkIpvsClient::Options three;
  three.dumpReaders = 3;
  three.parallelDumpMinServices = 0;
  auto spread = NetlinkIpvsClient::create(three);
  REQUIRE(spread.isOk());
  std::vector<Op> ops;
  ServiceSpec rr4;
  rr4.netmask = 0xffffffffu;
  for (uint32_t i = 0; i < 600; ++i) {
    auto key = ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80);
    ops.push_back(Op::addService(key, rr4));
    for (uint32_t j = 0; j < i % 7; ++j) {  // 0..6 dests: some services have none
      ops.push_back(Op::addDest(key, DestKey{Address::v4(0xAC100000u + i * 8 + j + 1), 8080},
                                DestSpec{FwdMethod::kMasq, static_cast<int>(j + 1), 0, 0, {}, 0, 0}));
    }
  }
  for (const Status& st : c->apply(ops)) REQUIRE_MESSAGE(st.isOk(), st.toString());
  auto b = (*plain)->dumpTable();
  REQUIRE_MESSAGE(b.isOk(), b.status().toString());
  CHECK(b->services.size() == 600);
  size_t dests = 0;
  for (const auto& [k, st] : b->services) dests += st.dests.size();
  CHECK(dests == 1795);  // the sum of i % 7 over 0..599

  REQUIRE((*spread)->dumpTable().isOk());  // opens its sockets (each resolves the family: one send)
  const auto spreadIo0 = (*spread)->ioCounters();
  for (auto* other : {c.get(), spread->get()}) {
    auto a = other->dumpTable();
    REQUIRE_MESSAGE(a.isOk(), a.status().toString());
    checkSameTable(*a, *b);
  }
  // One dests dump per service, whichever socket sent it.
  CHECK((*spread)->ioCounters().sends - spreadIo0.sends == 600 + 1);
}

TEST_CASE("kernel: a full read with the dests from /proc/net/ip_vs gives the netlink read's table") {
  NetlinkIpvsClient::Options procOptions;
  procOptions.destsFromProc = true;
  auto c = freshClient(procOptions);
  auto plain = NetlinkIpvsClient::create();
  REQUIRE(plain.isOk());
  std::vector<Op> ops;
  ServiceSpec rr4;
  rr4.netmask = 0xffffffffu;
  ServiceSpec rr6;
  rr6.netmask = 128;
  // 500 IPv4 services with 0..6 masq dests, weights 0..3.
  for (uint32_t i = 0; i < 500; ++i) {
    auto key = ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80);
    ops.push_back(Op::addService(key, rr4));
    for (uint32_t j = 0; j < i % 7; ++j) {
      ops.push_back(Op::addDest(key, DestKey{Address::v4(0xAC100000u + i * 8 + j + 1), static_cast<uint16_t>(8080 + j)},
                                DestSpec{FwdMethod::kMasq, static_cast<int>(j % 4), 0, 0, {}, 0, 0}));
    }
  }
  // IPv6 UDP with route dests; a persistent sh service with its flags and a
  // /24 mask; one-packet scheduling; a local dest; two fwmark services with
  // one mark (the listing cannot tell them apart); a tunnel dest.
  auto dns = ServiceKey::make(Protocol::kUdp, A("fd00:96::53"), 53);
  ops.push_back(Op::addService(dns, rr6));
  for (int j = 1; j <= 3; ++j) {
    auto a = A("fd00:1::");
    a.bytes[15] = static_cast<uint8_t>(j);
    ops.push_back(Op::addDest(dns, DestKey{a, 53}, DestSpec{FwdMethod::kRoute, j, 0, 0, {}, 0, 0}));
  }
  auto sticky = ServiceKey::tcp(A("10.96.0.2"), 443);
  ServiceSpec sh = rr4;
  sh.scheduler = "sh";
  sh.flags = kSvcFlagPersistent | kSvcFlagSched1 | kSvcFlagSched2;
  sh.timeout = 10800;
  sh.netmask = 0xffffff00u;
  ops.push_back(Op::addService(sticky, sh));
  ops.push_back(Op::addDest(sticky, DestKey{A("172.17.0.1"), 443}, DestSpec{}));
  ops.push_back(Op::addDest(sticky, DestKey{A("127.0.0.1"), 443}, DestSpec{FwdMethod::kLocal, 1, 0, 0, {}, 0, 0}));
  auto ops1 = ServiceKey::make(Protocol::kUdp, A("10.96.0.3"), 5060);
  ServiceSpec onePacket = rr4;
  onePacket.flags = kSvcFlagOnePacket;
  ops.push_back(Op::addService(ops1, onePacket));
  ops.push_back(Op::addDest(ops1, DestKey{A("172.17.0.3"), 5060}, DestSpec{}));
  auto mark4 = ServiceKey::mark(Family::kV4, 5);
  auto mark6 = ServiceKey::mark(Family::kV6, 5);
  ops.push_back(Op::addService(mark4, rr4));
  ops.push_back(Op::addService(mark6, rr6));
  ops.push_back(Op::addDest(mark4, DestKey{A("172.17.0.4"), 80}, DestSpec{}));
  ops.push_back(Op::addDest(mark6, DestKey{A("fd00:2::4"), 80}, DestSpec{FwdMethod::kRoute, 2, 0, 0, {}, 0, 0}));
  // A service whose listing (~130 KB) is longer than a read's buffer (64 KiB): its record comes in pieces.
  auto wide = ServiceKey::tcp(A("fd00:96::80"), 80);
  ops.push_back(Op::addService(wide, rr6));
  for (uint32_t j = 0; j < 1500; ++j) {
    auto a = A("fd00:3::");
    a.bytes[14] = static_cast<uint8_t>((j + 1) >> 8);
    a.bytes[15] = static_cast<uint8_t>(j + 1);
    ops.push_back(Op::addDest(wide, DestKey{a, static_cast<uint16_t>(8000 + j % 3)},
                              DestSpec{FwdMethod::kMasq, static_cast<int>(j % 5), 0, 0, {}, 0, 0}));
  }
  auto tunnelled = ServiceKey::tcp(A("10.96.0.4"), 80);
  ops.push_back(Op::addService(tunnelled, rr4));
  ops.push_back(Op::addDest(tunnelled, DestKey{A("172.17.0.5"), 80}, DestSpec{}));
  ops.push_back(Op::addDest(tunnelled, DestKey{A("172.17.0.6"), 80},
                            DestSpec{FwdMethod::kTunnel, 1, 0, 0, TunnelType::kGue, 6080, kTunFlagCsum}));
  for (const Status& st : c->apply(ops)) REQUIRE_MESSAGE(st.isOk(), st.toString());

  auto b = (*plain)->dumpTable();
  REQUIRE_MESSAGE(b.isOk(), b.status().toString());
  REQUIRE(b->services.size() == 507);
  REQUIRE(b->services.at(wide).dests.size() == 1500);
  const auto io0 = c->ioCounters();
  auto a = c->dumpTable();
  REQUIRE_MESSAGE(a.isOk(), a.status().toString());
  checkSameTable(*a, *b);
  // The listing gave the dests of all but the two fwmark services and the
  // tunnelled one, which took a dests dump each (after the service dump).
  CHECK(c->lastRead().procError.isOk());
  CHECK(c->lastRead().servicesFromProc == 504);
  CHECK(c->lastRead().servicesOverNetlink == 3);
  CHECK(c->ioCounters().sends - io0.sends <= 1 + 3 + 1);  // + the read socket's family lookup on first use
  const size_t wholeListing = c->lastRead().procReads;
  CHECK(wholeListing > 5);

  // Reads of the listing capped: the services not reached take a dests dump each; same table.
  // Capped two reads short of the whole: the listing's order follows the kernel's hash of each
  // service (seeded per namespace), and a read returns up to 64 KiB once the wide record has grown
  // the kernel's buffer, so a fixed cap may reach every listed service, or only the small
  // fwmark and tunnelled ones may be left; two reads' worth cannot be those alone.
  NetlinkIpvsClient::Options capped = procOptions;
  capped.procMaxReads = wholeListing - 2;
  const auto report = readEqual(capped, *b);
  CHECK(report.procError.isOk());
  CHECK(report.procReads == wholeListing - 2);
  CHECK(report.servicesFromProc > 0);
  CHECK(report.servicesFromProc < 504);
  CHECK(report.servicesFromProc + report.servicesOverNetlink == 507);

  // What the listing does not show: a threshold set by hand reads 0 from it.
  auto d = DestKey{Address::v4(0xAC100000u + 6 * 8 + 1), 8080};
  REQUIRE(c->updateDest(ServiceKey::tcp(Address::v4(0x0A000000u + 7), 80), d,
                        DestSpec{FwdMethod::kMasq, 0, 50, 10, {}, 0, 0})
              .isOk());
  auto full = (*plain)->dumpTable();
  auto fast = c->dumpTable();
  REQUIRE(full.isOk());
  REQUIRE(fast.isOk());
  const auto key7 = ServiceKey::tcp(Address::v4(0x0A000000u + 7), 80);
  CHECK(full->services.at(key7).dests.at(d).spec.upperThreshold == 50);
  CHECK(fast->services.at(key7).dests.at(d).spec.upperThreshold == 0);
}

TEST_CASE("kernel: with the dests from /proc/net/ip_vs, an empty table and one the listing cannot vouch for") {
  NetlinkIpvsClient::Options procOptions;
  procOptions.destsFromProc = true;
  auto c = freshClient(procOptions);
  auto empty = c->dumpTable();
  REQUIRE(empty.isOk());
  CHECK(empty->services.empty());
  CHECK(c->lastRead().servicesOverNetlink == 0);
  // Only fwmark services: the listing is read and gives nothing; each is read once, over netlink.
  ServiceSpec rr;
  rr.netmask = 0xffffffffu;
  auto mark = ServiceKey::mark(Family::kV4, 7);
  auto other = ServiceKey::mark(Family::kV4, 8);
  for (const auto& k : {mark, other}) {
    REQUIRE(c->addService(k, rr).isOk());
    REQUIRE(c->addDest(k, DestKey{A("172.17.0.1"), 80}, DestSpec{}).isOk());
  }
  auto t = c->dumpTable();
  REQUIRE_MESSAGE(t.isOk(), t.status().toString());
  CHECK(c->lastRead().procError.isOk());
  CHECK(c->lastRead().servicesFromProc == 0);
  CHECK(c->lastRead().servicesOverNetlink == 2);
  REQUIRE(t->services.size() == 2);
  CHECK(t->services.at(mark).dests.size() == 1);
  CHECK(t->services.at(other).dests.size() == 1);
}

TEST_CASE("kernel: a listing that cannot be opened or parsed: every real server over netlink, and says why") {
  NetlinkIpvsClient::Options procOptions;
  procOptions.destsFromProc = true;
  auto c = freshClient(procOptions);
  ServiceSpec rr;
  rr.netmask = 0xffffffffu;
  auto web = ServiceKey::tcp(A("10.96.0.1"), 80);
  auto api = ServiceKey::tcp(A("10.96.0.2"), 443);
  for (const auto& k : {web, api}) {
    REQUIRE(c->addService(k, rr).isOk());
    REQUIRE(c->addDest(k, DestKey{A("172.17.0.1"), 8080}, DestSpec{}).isOk());
  }
  auto plain = c->dumpTable();  // the real listing
  REQUIRE(plain.isOk());
  CHECK(c->lastRead().servicesFromProc == 2);

  // A listing that goes wrong after it has given web a real server the kernel does not have: that
  // one must not survive the fallback.
  char path[] = "/tmp/kipvs-listing-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "IP Virtual Server version 1.2.1 (size=4096)\n"
      "Prot LocalAddress:Port Scheduler Flags\n"
      "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
      "TCP  0A600001:0050 rr  \n"
      "  -> AC110063:1F90      Masq    1      0          0         \n"
      "TCP  0A600002:01BB rr  \n"
      "  -> this is not a real server line\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  for (const char* p : {static_cast<const char*>(path), "/nonexistent/ip_vs"}) {
    CAPTURE(p);
    NetlinkIpvsClient::Options bad = procOptions;
    bad.procPath = p;
    const auto report = readEqual(bad, *plain);
    CHECK(report.servicesFromProc == 0);
    CHECK(report.servicesOverNetlink == 2);
    CHECK(report.procError.code() == (p == std::string(path) ? Code::kParse : Code::kIo));
    CHECK(report.procError.message().find(p == std::string(path) ? "line 7" : "/nonexistent/ip_vs") !=
          std::string::npos);
  }
  unlink(path);
}

TEST_CASE("kernel: a full read gives the same table when another thread helps it (helpRead)") {
  auto c = freshClient();  // one reader: the calling thread
  auto plain = NetlinkIpvsClient::create();
  REQUIRE(plain.isOk());
  std::vector<Op> ops;
  ServiceSpec rr4;
  rr4.netmask = 0xffffffffu;
  constexpr uint32_t kServices = 2000;
  for (uint32_t i = 0; i < kServices; ++i) {
    auto key = ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80);
    ops.push_back(Op::addService(key, rr4));
    for (uint32_t j = 0; j < i % 5; ++j) {
      ops.push_back(Op::addDest(key, DestKey{Address::v4(0xAC100000u + i * 8 + j + 1), 8080},
                                DestSpec{FwdMethod::kMasq, static_cast<int>(j + 1), 0, 0, {}, 0, 0}));
    }
  }
  for (const Status& st : c->apply(ops)) REQUIRE_MESSAGE(st.isOk(), st.toString());
  auto b = (*plain)->dumpTable();
  REQUIRE_MESSAGE(b.isOk(), b.status().toString());
  REQUIRE(b->services.size() == kServices);

  // No read running: nothing to help with, at once.
  CHECK(c->helpRead() == 0);

  // The helper keeps offering help until the read is over (it may come
  // before the read starts, or after it ends: then it gets 0).
  auto readHelped = [&](StatusOr<Table>& out) {
    std::atomic<bool> over{false};
    size_t helped = 0;
    std::thread helper([&] {
      while (!over.load()) {
        helped += c->helpRead();
        std::this_thread::yield();
      }
    });
    out = c->dumpTable();
    over = true;
    helper.join();
    return helped;
  };
  StatusOr<Table> warm = Table{};
  readHelped(warm);  // opens the sockets (each resolves the family: one send)
  REQUIRE_MESSAGE(warm.isOk(), warm.status().toString());
  const auto io0 = c->ioCounters();
  StatusOr<Table> a = Table{};
  const size_t helped = readHelped(a);
  REQUIRE_MESSAGE(a.isOk(), a.status().toString());
  CHECK(helped > 0);  // 2,000 dests dumps leave the helper time to join
  CHECK(helped < kServices);
  // One dests dump per service, whichever thread sent it, and the service dump.
  CHECK(c->ioCounters().sends - io0.sends == kServices + 1);
  checkSameTable(*a, *b);
}

TEST_CASE("kernel: a read over several sockets beside another client's writes never fails, then settles") {
  // A full read is not a snapshot: the services are listed first, then each
  // one's dests. A service deleted in between reads back with no dests, one
  // added in between is missed; neither is an error.
  // The same holds with the dests from /proc/net/ip_vs, which is not a
  // snapshot either: read a page at a time, it can list a service twice or
  // skip one when the table changes between reads.
  NetlinkIpvsClient::Options options;
  options.parallelDumpMinServices = 0;
  SUBCASE("dests dumps over three sockets") { options.dumpReaders = 3; }
  SUBCASE("dests from /proc/net/ip_vs") { options.destsFromProc = true; }
  auto c = freshClient(options);
  auto writer = NetlinkIpvsClient::create();  // its socket lives in this namespace, whatever thread uses it
  REQUIRE(writer.isOk());
  ServiceSpec rr4;
  rr4.netmask = 0xffffffffu;
  auto key = [](uint32_t i) { return ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80); };
  auto withDests = [&](uint32_t i, std::vector<Op>& ops) {
    ops.push_back(Op::addService(key(i), rr4));
    for (uint32_t j = 0; j < 3; ++j) {
      ops.push_back(Op::addDest(key(i), DestKey{Address::v4(0xAC100000u + i * 4 + j + 1), 8080}, DestSpec{}));
    }
  };
  std::vector<Op> ops;
  for (uint32_t i = 0; i < 400; ++i) withDests(i, ops);
  for (const Status& st : c->apply(ops)) REQUIRE_MESSAGE(st.isOk(), st.toString());

  // The writer deletes and re-adds the first 100 services, one at a time.
  std::atomic<bool> stop{false};
  std::atomic<int> writeFailures{0};
  std::atomic<int> rounds{0};
  std::thread churn([&] {
    for (uint32_t n = 0; !stop.load(); ++n) {
      std::vector<Op> batch{Op::deleteService(key(n % 100))};
      withDests(n % 100, batch);
      for (const Status& st : (*writer)->apply(batch)) writeFailures += st.isOk() ? 0 : 1;
      ++rounds;
    }
  });
  int reads = 0, failures = 0, fromProc = 0;
  size_t tooMany = 0;
  while (reads < 5 || rounds.load() < 200) {
    auto t = c->dumpTable();
    ++reads;
    if (!t.isOk()) {
      ++failures;
      MESSAGE("read failed: ", t.status().toString());
      continue;
    }
    fromProc += c->lastRead().servicesFromProc > 0;
    CHECK(c->lastRead().procError.isOk());
    for (const auto& [k, st] : t->services) tooMany += st.dests.size() > 3;
    if (reads > 200) break;
  }
  stop = true;
  churn.join();
  MESSAGE(reads, " full reads beside ", rounds.load(), " rounds of writes");
  CHECK(failures == 0);
  CHECK(tooMany == 0);
  CHECK(writeFailures.load() == 0);
  CHECK(rounds.load() >= 200);  // the writes really went on beside the reads
  CHECK(fromProc == (options.destsFromProc ? reads : 0));

  auto settled = c->dumpTable();
  REQUIRE(settled.isOk());
  CHECK(settled->services.size() == 400);
  size_t dests = 0;
  for (const auto& [k, st] : settled->services) dests += st.dests.size();
  CHECK(dests == 1200);
}

TEST_CASE("kernel: a big batch where every op fails gets every error back") {
  auto c = freshClient();
  std::vector<Op> ops;
  for (uint32_t i = 0; i < 5000; ++i) {
    ops.push_back(Op::deleteDest(ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80),
                                 DestKey{Address::v4(0xAC100001u), 80}));
  }
  const auto io0 = c->ioCounters();
  auto results = c->apply(ops);
  const auto io1 = c->ioCounters();
  size_t esrch = 0;
  for (const Status& s : results) esrch += s.errnum() == ESRCH;
  CHECK(esrch == ops.size());
  CHECK(io1.reopens == io0.reopens);
  MESSAGE("5000 failing ops: batch " << c->batchOps() << " ops, sends " << (io1.sends - io0.sends) << ", receives "
                                     << (io1.receives - io0.receives));
}

TEST_CASE("kernel: ENOBUFS when error acks overflow a tiny receive buffer") {
  // Use the socket directly to bypass the client's batch cap.
  kerneltest::enterFreshNetns();
  netlink::SocketOptions so;
  so.rcvbufBytes = 4096;
  so.timeout = std::chrono::milliseconds(2000);
  auto sock = netlink::GenlSocket::open(codec::kGenlName, so);
  REQUIRE(sock.isOk());
  netlink::GenlSocket& s = **sock;
  netlink::MessageWriter w;
  const uint32_t first = s.seqBase();
  const uint32_t n = 2000;
  for (uint32_t i = 0; i < n; ++i) {
    REQUIRE(codec::encodeOp(w, s.familyId(), NLM_F_REQUEST, first + i,
                            Op::deleteService(ServiceKey::tcp(Address::v4(0x0A000000u + i + 1), 80)))
                .isOk());
  }
  w.addFlagsToLast(NLM_F_ACK);
  s.advanceSeq(n);
  REQUIRE(s.send(w.bytes()).isOk());
  size_t errors = 0;
  Status r = s.receive([&](const netlink::Message& m) -> StatusOr<netlink::Next> {
    if (m.type == NLMSG_ERROR) ++errors;
    return m.seq == first + n - 1 ? netlink::Next::kDone : netlink::Next::kMore;
  });
  MESSAGE("tiny rcvbuf " << s.rcvbuf() << ": got " << errors << " of " << n << " error acks, then " << r.toString());
  CHECK(r.errnum() == ENOBUFS);
  CHECK(s.counters().reopens == 1);
  // The recreated socket works.
  auto c = NetlinkIpvsClient::create();
  REQUIRE(c.isOk());
  CHECK((*c)->info().isOk());
}

TEST_CASE("kernel: dumps cannot be pipelined on one socket (the second gets EBUSY)") {
  auto c = freshClient();
  auto a = ServiceKey::tcp(A("10.0.0.1"), 80);
  auto b = ServiceKey::tcp(A("10.0.0.2"), 80);
  for (const auto& k : {a, b}) {
    REQUIRE(c->addService(k, ServiceSpec{}).isOk());
    REQUIRE(c->addDest(k, DestKey{A("172.16.0.1"), 80}, DestSpec{}).isOk());
  }
  auto sock = netlink::GenlSocket::open(codec::kGenlName, {});
  REQUIRE(sock.isOk());
  netlink::GenlSocket& s = **sock;
  netlink::MessageWriter w;
  const uint32_t first = s.seqBase();
  for (uint32_t i = 0; i < 2; ++i) {
    w.beginGenl(s.familyId(), NLM_F_REQUEST | NLM_F_DUMP, first + i, IPVS_CMD_GET_DEST, codec::kGenlVersion);
    REQUIRE(codec::putServiceKey(w, i == 0 ? a : b).isOk());
    w.endMessage();
  }
  s.advanceSeq(2);
  REQUIRE(s.send(w.bytes()).isOk());
  int secondError = 0, dests = 0, dones = 0;
  Status r = s.receive([&](const netlink::Message& m) -> StatusOr<netlink::Next> {
    if (m.type == NLMSG_ERROR && m.seq == first + 1) secondError = netlink::parseAck(m)->error;
    if (m.type == s.familyId()) ++dests;
    if (m.type == NLMSG_DONE) ++dones;
    return dones == 1 ? netlink::Next::kDone : netlink::Next::kMore;
  });
  REQUIRE(r.isOk());
  MESSAGE("second pipelined dump: " << std::string(secondError ? errnoName(secondError) : "ok") << ", dests " << dests);
  CHECK(secondError == EBUSY);
}

TEST_CASE("kernel: flush empties the table") {
  auto c = freshClient();
  REQUIRE(c->addService(ServiceKey::tcp(A("10.0.0.1"), 80), ServiceSpec{}).isOk());
  REQUIRE(c->flush().isOk());
  auto t = c->dumpTable();
  REQUIRE(t.isOk());
  CHECK(t->services.empty());
}
