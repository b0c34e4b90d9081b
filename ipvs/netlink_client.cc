#include "ipvs/netlink_client.h"

#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "ipvs/codec.h"

namespace kipvs::ipvs {

using netlink::GenlView;
using netlink::Message;
using netlink::MessageWriter;
using netlink::Next;

namespace {

// Receive-buffer cost of one error ack (skb truesize), rounded up, so that a
// batch whose every op fails still fits the receive buffer.
constexpr size_t kAckTruesize = 1536;

std::string withExt(std::string what, const std::string& ext) {
  return ext.empty() ? what : what + ": " + ext;
}

Status dumpInterrupted(const char* what) {
  return Status::error(Code::kKernel,
                       std::string(what) + " dump interrupted by a concurrent change (NLM_F_DUMP_INTR); re-dump",
                       EINTR);
}

}  // namespace

NetlinkIpvsClient::NetlinkIpvsClient(Options options, std::unique_ptr<netlink::GenlSocket> socket,
                                     std::optional<ProcIpvsFile> procFile, Status procError)
    : options_(std::move(options)),
      socket_(std::move(socket)),
      procFile_(std::move(procFile)),
      procOpenError_(std::move(procError)) {}

StatusOr<std::unique_ptr<NetlinkIpvsClient>> NetlinkIpvsClient::create(Options options) {
  auto socket = netlink::GenlSocket::open(options.genlFamily.c_str(), options.socket);
  if (!socket) {
    Status s = socket.status();
    if (s.code() == Code::kUnsupported) {
      return Status::error(Code::kUnsupported, "IPVS generic netlink family not found: is the ip_vs module loaded?",
                           s.errnum());
    }
    return s.withContext("opening the IPVS netlink socket");
  }
  // Opened here, on the thread that opened the socket: both then see the
  // same namespace, whichever thread reads later. Without it, full reads use
  // dests dumps only (lastRead().procError says why).
  std::optional<ProcIpvsFile> procFile;
  Status procError;
  if (options.destsFromProc) {
    auto f = ProcIpvsFile::open(options.procPath.c_str());
    if (f) {
      procFile.emplace(std::move(*f));
    } else {
      procError = f.status();
    }
  }
  return std::unique_ptr<NetlinkIpvsClient>(
      new NetlinkIpvsClient(std::move(options), std::move(*socket), std::move(procFile), std::move(procError)));
}

size_t NetlinkIpvsClient::batchOps() const {
  size_t byRcvbuf = static_cast<size_t>(std::max(socket_->rcvbuf(), 0)) / kAckTruesize;
  return std::max<size_t>(1, std::min(options_.maxBatchOps, byRcvbuf));
}

netlink::IoCounters NetlinkIpvsClient::ioCounters() const {
  netlink::IoCounters sum = socket_->counters();
  auto add = [&](const netlink::GenlSocket& s) {
    const auto& r = s.counters();
    sum.sends += r.sends;
    sum.receives += r.receives;
    sum.polls += r.polls;
    sum.datagrams += r.datagrams;
    sum.messagesSent += r.messagesSent;
    sum.reopens += r.reopens;
  };
  if (readSocket_) add(*readSocket_);
  for (const auto& s : extraReadSockets_) add(*s);
  if (helpSocket_) add(*helpSocket_);
  return sum;
}

netlink::SocketOptions NetlinkIpvsClient::readSocketOptions(netlink::SocketOptions base) {
  // Any dump datagram fits: the kernel fills at most max(NLMSG_GOODSIZE,
  // the slot size), and NLMSG_GOODSIZE is below min(page size, 8 KiB).
  base.rxSlotBytes = static_cast<size_t>(std::clamp<long>(::sysconf(_SC_PAGESIZE), 4096, 8192));
  base.rxSlots = 16;  // a service with 100 dests is about 10 datagrams
  base.rcvbufBytes = std::min(base.rcvbufBytes, 1 << 20);
  return base;
}

StatusOr<netlink::GenlSocket*> NetlinkIpvsClient::readSocket() {
  if (!readSocket_) {
    auto s = netlink::GenlSocket::open(options_.genlFamily.c_str(), readSocketOptions(options_.socket));
    if (!s) return s.status().withContext("opening the IPVS read socket");
    readSocket_ = std::move(*s);
  }
  return readSocket_.get();
}

Status NetlinkIpvsClient::request(netlink::GenlSocket& sock, MessageWriter& writer, uint8_t cmd,
                                  const std::function<Status(MessageWriter&)>& fill, const ReplyFn& onReply) {
  const bool isDump = cmd == IPVS_CMD_GET_SERVICE || cmd == IPVS_CMD_GET_DEST;
  writer.clear();
  const uint32_t seq = sock.seqBase();
  // Dumps end with NLMSG_DONE; everything else with its ack.
  writer.beginGenl(sock.familyId(), NLM_F_REQUEST | (isDump ? NLM_F_DUMP : NLM_F_ACK), seq, cmd,
                   codec::kGenlVersion);
  if (fill) {
    Status s = fill(writer);
    if (!s.isOk()) {
      writer.clear();
      return s;
    }
  }
  writer.endMessage();
  sock.advanceSeq(1);
  KIPVS_RETURN_IF_ERROR(sock.send(writer.bytes()));

  Status result;
  bool interrupted = false;
  const uint16_t family = sock.familyId();
  Status r = sock.receive([&](const Message& m) -> StatusOr<Next> {
    if (m.seq != seq) return Next::kMore;  // a straggler from an earlier request
    if (m.type == NLMSG_ERROR) {
      auto ack = netlink::parseAck(m);
      if (!ack) return ack.status();
      if (ack->error != 0) result = Status::kernel(ack->error, ack->extMessage);
      return Next::kDone;
    }
    if (m.type == NLMSG_DONE) {
      if (int err = netlink::parseDoneError(m); err != 0) result = Status::kernel(err, "");
      interrupted |= (m.flags & NLM_F_DUMP_INTR) != 0;
      return Next::kDone;
    }
    if (m.type != family) return Next::kMore;
    interrupted |= (m.flags & NLM_F_DUMP_INTR) != 0;
    auto g = netlink::parseGenl(m);
    // Keep reading to the end of a dump even after a bad message: the socket
    // must not be left with a dump in progress.
    if (!g) {
      if (result.isOk()) result = g.status();
    } else if (onReply && result.isOk()) {
      result = onReply(*g);
    }
    return Next::kMore;
  });
  KIPVS_RETURN_IF_ERROR(r);
  if (interrupted && result.isOk()) return dumpInterrupted(isDump ? "IPVS" : "IPVS request");
  return result;
}

Status NetlinkIpvsClient::dumpDests(netlink::GenlSocket& sock, MessageWriter& writer, const ServiceKey& key,
                                    const std::function<Status(netlink::Bytes)>& onDest) {
  Status s = request(
      sock, writer, IPVS_CMD_GET_DEST, [&](MessageWriter& w) { return codec::putServiceKey(w, key); },
      [&](const GenlView& g) { return g.cmd == IPVS_CMD_NEW_DEST ? onDest(g.attrs) : Status::ok(); });
  if (!s.isOk()) return s.withContext("dumping the destinations of " + key.toString());
  return s;
}

namespace {

// One NEW_DEST message's attributes into state.
Status decodeDestInto(netlink::Bytes attrs, Family family, codec::WithStats stats, ServiceState& state) {
  auto d = codec::decodeDestMessage(attrs, family, stats);
  if (!d) return d.status();
  putReadDest(state.dests, d->key, DestState{d->spec, d->counters});
  return Status::ok();
}

}  // namespace

StatusOr<Table> NetlinkIpvsClient::dumpTable() {
  lastRead_ = ReadReport{};
  {
    std::lock_guard<std::mutex> lk(shared_.mu);
    shared_.readingServices = true;
  }
  // However the read ends, a helpRead() waiting for its dests stops waiting.
  struct ServicesRead {
    SharedRead& shared;
    ~ServicesRead() {
      {
        std::lock_guard<std::mutex> lk(shared.mu);
        shared.readingServices = false;
      }
      shared.cv.notify_all();
    }
  } servicesRead{shared_};
  Table table;
  Status s = request(*socket_, IPVS_CMD_GET_SERVICE, nullptr, [&](const GenlView& g) -> Status {
    if (g.cmd != IPVS_CMD_NEW_SERVICE) return Status::ok();
    auto e = codec::decodeServiceMessage(g.attrs, stats());
    if (!e) return e.status();
    ServiceState& st = table.services[e->key];
    st.spec = e->spec;
    st.stats = e->stats;
    return Status::ok();
  });
  if (!s.isOk()) return s.withContext("dumping IPVS services");
  std::optional<std::vector<ServiceRef>> rest;
  if (options_.destsFromProc && !table.services.empty()) {
    auto r = readDestsFromProc(table);
    if (r) {
      rest = std::move(*r);
      lastRead_.servicesFromProc = table.services.size() - rest->size();
    } else {
      lastRead_.procError = r.status();
    }
  }
  if (!rest) {  // not asked, not open, or failed (then it cleared every dest)
    rest.emplace();
    rest->reserve(table.services.size());
    for (auto& [key, state] : table.services) rest->emplace_back(&key, &state);
  }
  lastRead_.servicesOverNetlink = rest->size();
  // One dests dump per service: the kernel has no all-dests dump, and a
  // socket runs one dump at a time (a second dump request while one is in
  // progress gets EBUSY), so they cannot be pipelined on this socket. Each
  // costs one sendmsg and, thanks to recvmmsg, usually one receive.
  // Many dests dumps are spread over several sockets, when asked.
  const bool large = rest->size() >= options_.parallelDumpMinServices;
  KIPVS_RETURN_IF_ERROR(dumpAllDests(std::move(*rest), large ? std::max<size_t>(options_.dumpReaders, 1) : 1));
  normalizeRead(table);
  return table;
}

StatusOr<std::vector<ServiceRef>> NetlinkIpvsClient::readDestsFromProc(Table& table) {
  if (!procFile_) return procOpenError_;
  ProcDestsReader reader(table);
  Status s = procFile_->readInto(reader, options_.procMaxReads, &lastRead_.procReads);
  auto rest = s.isOk() ? reader.finish() : StatusOr<std::vector<ServiceRef>>(s);
  if (!rest) {
    for (auto& [key, state] : table.services) state.dests.clear();  // all of them go to dests dumps
  }
  return rest;
}

struct NetlinkIpvsClient::DestsWork {
  std::vector<ServiceRef> items;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  Status helperError;  // helpRead()'s first failure (under SharedRead::mu)

  // Reads small runs of services in turn until none are left, so that a
  // reader slowed down (its CPU taken by something else) holds up nothing.
  // The first error stops every reader. Counts the services it took in *done.
  Status read(NetlinkIpvsClient& client, netlink::GenlSocket& sock, MessageWriter& writer, size_t* done = nullptr) {
    constexpr size_t kRun = 32;
    for (;;) {
      const size_t begin = next.fetch_add(kRun, std::memory_order_relaxed);
      if (begin >= items.size() || failed.load(std::memory_order_relaxed)) return Status::ok();
      for (size_t i = begin; i < std::min(begin + kRun, items.size()); ++i) {
        if (done) ++*done;
        const ServiceKey& key = *items[i].first;
        ServiceState& state = *items[i].second;
        Status s = client.dumpDests(sock, writer, key, [&](netlink::Bytes attrs) {
          return decodeDestInto(attrs, key.family, client.stats(), state);
        });
        if (!s.isOk()) {
          failed = true;
          return s;
        }
      }
    }
  }
};

Status NetlinkIpvsClient::dumpAllDests(std::vector<ServiceRef> services, size_t readerCount) {
  if (services.empty()) return Status::ok();
  auto first = readSocket();
  if (!first) return first.status();
  // Every reader's socket; a reader that cannot be had (no socket, no
  // thread) just leaves more work to the others.
  struct Reader {
    netlink::GenlSocket* sock;
    MessageWriter writer;
    Status error;
  };
  std::vector<Reader> readers;
  readers.reserve(readerCount);
  readers.push_back({*first, {}, {}});
  for (size_t i = 0; i + 1 < readerCount; ++i) {
    if (i == extraReadSockets_.size()) {
      auto s = netlink::GenlSocket::open(codec::kGenlName, readSocketOptions(options_.socket));
      if (!s) break;
      extraReadSockets_.push_back(std::move(*s));
    }
    readers.push_back({extraReadSockets_[i].get(), {}, {}});
  }

  DestsWork work;
  work.items = std::move(services);
  // Open to helpRead() until the readers are done; on the way out (an
  // exception too) the queue closes and no helper is left inside `work`.
  struct Published {
    SharedRead& shared;
    DestsWork& work;
    Published(SharedRead& s, DestsWork& w) : shared(s), work(w) {
      {
        std::lock_guard<std::mutex> lk(shared.mu);
        shared.dests = &work;
      }
      shared.cv.notify_all();
    }
    ~Published() {
      work.failed = true;  // the queue is empty anyway, unless the readers stopped early
      std::unique_lock<std::mutex> lk(shared.mu);
      shared.dests = nullptr;
      shared.cv.wait(lk, [&] { return shared.helpers == 0; });
    }
  };
  {
    Published published(shared_, work);
    std::vector<std::thread> threads;
    for (size_t i = 1; i < readers.size(); ++i) {
      try {
        threads.emplace_back([&, &r = readers[i]] { r.error = work.read(*this, *r.sock, r.writer); });
      } catch (const std::system_error&) {
        break;
      }
    }
    readers[0].error = work.read(*this, *readers[0].sock, readers[0].writer);
    for (auto& t : threads) t.join();
  }
  for (const Reader& r : readers) KIPVS_RETURN_IF_ERROR(r.error);
  return work.helperError;  // no helper is left to write it
}

size_t NetlinkIpvsClient::helpRead() {
  std::unique_lock<std::mutex> lk(shared_.mu);
  shared_.cv.wait(lk, [&] { return !shared_.readingServices || shared_.dests; });
  DestsWork* work = shared_.dests;
  if (!work) return 0;
  ++shared_.helpers;
  lk.unlock();
  Status s;
  if (!helpSocket_) {
    auto sock = netlink::GenlSocket::open(codec::kGenlName, readSocketOptions(options_.socket));
    if (sock) helpSocket_ = std::move(*sock);
  }
  // No socket: the read's own readers do it all.
  size_t done = 0;
  if (helpSocket_) s = work->read(*this, *helpSocket_, helpWriter_, &done);
  lk.lock();
  if (!s.isOk() && work->helperError.isOk()) work->helperError = std::move(s);
  --shared_.helpers;
  lk.unlock();
  shared_.cv.notify_all();
  return done;
}

StatusOr<std::optional<ServiceState>> NetlinkIpvsClient::dumpService(const ServiceKey& key) {
  // GET_SERVICE (acked) and the dests dump share one sendmsg: a doit request
  // does not occupy the socket's dump slot.
  auto rs = readSocket();
  if (!rs) return rs.status();
  netlink::GenlSocket& sock = **rs;
  writer_.clear();
  const uint16_t family = sock.familyId();
  const uint32_t svcSeq = sock.seqBase();
  const uint32_t destSeq = svcSeq + 1;
  writer_.beginGenl(family, NLM_F_REQUEST | NLM_F_ACK, svcSeq, IPVS_CMD_GET_SERVICE, codec::kGenlVersion);
  Status enc = codec::putServiceKey(writer_, key);
  if (!enc.isOk()) return enc.withContext("dump " + key.toString());
  writer_.endMessage();
  writer_.beginGenl(family, NLM_F_REQUEST | NLM_F_DUMP, destSeq, IPVS_CMD_GET_DEST, codec::kGenlVersion);
  KIPVS_RETURN_IF_ERROR(codec::putServiceKey(writer_, key));
  writer_.endMessage();
  sock.advanceSeq(2);
  KIPVS_RETURN_IF_ERROR(sock.send(writer_.bytes()).withContext("dump " + key.toString()));

  std::optional<codec::ServiceEntry> found;
  ServiceState state;
  Status svcResult, destResult;
  bool interrupted = false;
  Status r = sock.receive([&](const Message& m) -> StatusOr<Next> {
    if (m.seq == svcSeq) {
      if (m.type == NLMSG_ERROR) {
        auto ack = netlink::parseAck(m);
        if (!ack) return ack.status();
        // ESRCH: no such service; the (empty) dests dump still follows.
        if (ack->error != 0 && ack->error != ESRCH) svcResult = Status::kernel(ack->error, ack->extMessage);
      } else if (m.type == family) {
        auto g = netlink::parseGenl(m);
        if (!g) return g.status();
        if (g->cmd == IPVS_CMD_NEW_SERVICE) {
          auto e = codec::decodeServiceMessage(g->attrs, stats());
          if (!e) {
            svcResult = e.status();
          } else {
            found = *e;
          }
        }
      }
      return Next::kMore;
    }
    if (m.seq != destSeq) return Next::kMore;
    if (m.type == NLMSG_ERROR) {
      auto ack = netlink::parseAck(m);
      if (!ack) return ack.status();
      if (ack->error != 0) destResult = Status::kernel(ack->error, ack->extMessage);
      return Next::kDone;
    }
    if (m.type == NLMSG_DONE) {
      if (int err = netlink::parseDoneError(m); err != 0) destResult = Status::kernel(err, "");
      return Next::kDone;
    }
    if (m.type == family && destResult.isOk()) {
      interrupted |= (m.flags & NLM_F_DUMP_INTR) != 0;
      auto g = netlink::parseGenl(m);
      if (!g) {
        destResult = g.status();
      } else if (g->cmd == IPVS_CMD_NEW_DEST) {
        destResult = decodeDestInto(g->attrs, key.family, stats(), state);
      }
    }
    return Next::kMore;
  });
  const std::string what = "dump " + key.toString();
  KIPVS_RETURN_IF_ERROR(r.withContext(what));
  KIPVS_RETURN_IF_ERROR(svcResult.withContext(what));
  KIPVS_RETURN_IF_ERROR(destResult.withContext(what));
  if (interrupted) return dumpInterrupted("IPVS destination");
  if (!found) return std::optional<ServiceState>();

  Table one;
  state.spec = found->spec;
  state.stats = found->stats;
  one.services.emplace(found->key, std::move(state));
  normalizeRead(one);
  return std::optional<ServiceState>(std::move(one.services.begin()->second));
}

void NetlinkIpvsClient::checkFamily(std::span<const Op> ops, const std::vector<size_t>& indexOf, uint16_t family,
                                    std::vector<Status>& results) {
  // The kernel answers a request for a family id it does not know with
  // ENOENT, as IPVS answers one for a destination it does not have. After
  // ip_vs is reloaded (a new id) every request of the batch gets it, and a
  // delete would pass for done. One ENOENT costs one family lookup.
  bool enoent = false;
  for (size_t idx : indexOf) {
    enoent |= results[idx].code() == Code::kKernel && results[idx].errnum() == ENOENT;
  }
  if (!enoent) return;
  StatusOr<bool> changed = socket_->refreshFamily();
  if (changed.isOk() && !*changed) return;
  const Status why = changed.isOk() ? Status::error(Code::kIo,
                                                    "not applied: IPVS's generic netlink family was registered "
                                                    "again (ip_vs reloaded), id " + std::to_string(family) +
                                                        " is now " + std::to_string(socket_->familyId()),
                                                    ESTALE)
                                    : changed.status();
  for (size_t idx : indexOf) {
    if (results[idx].code() == Code::kKernel && results[idx].errnum() == ENOENT) {
      results[idx] = why.withContext(ops[idx].toString());
    }
  }
}

void NetlinkIpvsClient::runBatch(std::span<const Op> ops, const std::vector<size_t>& indexOf, uint32_t firstSeq,
                                 uint16_t family, std::vector<Status>& results) {
  const size_t count = indexOf.size();
  // Only the last request is acked: its ack proves every earlier one was
  // processed, and the earlier ones answer only when they fail.
  writer_.addFlagsToLast(NLM_F_ACK);
  socket_->advanceSeq(static_cast<uint32_t>(count));
  Status sent = socket_->send(writer_.bytes());
  if (!sent.isOk()) {
    for (size_t k = 0; k < count; ++k) results[indexOf[k]] = sent.withContext(ops[indexOf[k]].toString());
    return;
  }
  writeCount_ += count;

  std::vector<uint8_t> answered(count, 0);
  Status r = socket_->receive([&](const Message& m) -> StatusOr<Next> {
    if (m.type != NLMSG_ERROR) return Next::kMore;
    const uint32_t k = m.seq - firstSeq;  // wraps for seqs outside the batch
    if (k >= count) return Next::kMore;
    auto ack = netlink::parseAck(m);
    if (!ack) return ack.status();
    answered[k] = 1;
    if (ack->error != 0) {
      results[indexOf[k]] = Status::kernel(ack->error, withExt(ops[indexOf[k]].toString(), ack->extMessage));
    }
    return k + 1 == count ? Next::kDone : Next::kMore;
  });
  if (r.isOk()) {
    checkFamily(ops, indexOf, family, results);
    return;
  }
  // Replies were lost (ENOBUFS) or never came (timeout): an op without an
  // answer may have succeeded or failed. The caller re-dumps.
  for (size_t k = 0; k < count; ++k) {
    if (answered[k]) continue;
    results[indexOf[k]] =
        Status::error(r.code(), ops[indexOf[k]].toString() + ": result unknown: " + r.message(), r.errnum());
  }
}

std::vector<Status> NetlinkIpvsClient::apply(std::span<const Op> ops) {
  std::vector<Status> results(ops.size());
  const size_t maxOps = batchOps();
  std::vector<size_t> indexOf;  // batch position -> index in ops
  indexOf.reserve(std::min(maxOps, ops.size()));
  size_t i = 0;
  while (i < ops.size()) {
    const size_t maxBytes = std::min(options_.maxBatchBytes, socket_->maxSendBytes());
    const uint32_t firstSeq = socket_->seqBase();
    const uint16_t family = socket_->familyId();
    writer_.clear();
    indexOf.clear();
    for (; i < ops.size() && indexOf.size() < maxOps; ++i) {
      const size_t mark = writer_.size();
      const size_t messages = writer_.messageCount();
      const uint32_t seq = firstSeq + static_cast<uint32_t>(indexOf.size());
      Status s = codec::encodeOp(writer_, family, NLM_F_REQUEST, seq, ops[i]);
      if (!s.isOk()) {
        results[i] = s.withContext(ops[i].toString());
        continue;
      }
      if (writer_.size() > maxBytes && !indexOf.empty()) {
        writer_.truncate(mark, messages);
        break;
      }
      indexOf.push_back(i);
    }
    if (!indexOf.empty()) runBatch(ops, indexOf, firstSeq, family, results);
  }
  return results;
}

StatusOr<Timeouts> NetlinkIpvsClient::getTimeouts() {
  Timeouts t;
  Status s = request(*socket_, IPVS_CMD_GET_CONFIG, nullptr, [&](const GenlView& g) -> Status {
    auto d = codec::decodeTimeouts(g.attrs);
    if (!d) return d.status();
    t = *d;
    return Status::ok();
  });
  if (!s.isOk()) return s.withContext("get timeouts");
  return t;
}

Status NetlinkIpvsClient::setTimeouts(const Timeouts& t) {
  ++writeCount_;
  return request(*socket_,
             IPVS_CMD_SET_CONFIG,
             [&](MessageWriter& w) {
               codec::putTimeouts(w, t);
               return Status::ok();
             },
             nullptr)
      .withContext("set timeouts tcp " + std::to_string(t.tcp) + " tcpfin " + std::to_string(t.tcpFin) + " udp " +
                   std::to_string(t.udp));
}

Status NetlinkIpvsClient::zero(const std::optional<ServiceKey>& key) {
  ++writeCount_;
  return request(*socket_,
             IPVS_CMD_ZERO,
             [&](MessageWriter& w) { return key ? codec::putServiceKey(w, *key) : Status::ok(); },
             nullptr)
      .withContext(key ? "zero " + key->toString() : std::string("zero all"));
}

Status NetlinkIpvsClient::flush() {
  ++writeCount_;
  return request(*socket_, IPVS_CMD_FLUSH, nullptr, nullptr).withContext("flush");
}

StatusOr<Info> NetlinkIpvsClient::info() {
  Info info;
  Status s = request(*socket_, IPVS_CMD_GET_INFO, nullptr, [&](const GenlView& g) -> Status {
    auto d = codec::decodeInfo(g.attrs);
    if (!d) return d.status();
    info = *d;
    return Status::ok();
  });
  if (!s.isOk()) return s.withContext("get info");
  return info;
}

}  // namespace kipvs::ipvs
