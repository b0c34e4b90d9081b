// What reading the IPVS table costs the kernel, apart from what kipvs does
// with the answers: one GET_SERVICE dump, then one GET_DEST dump per service,
// with replies counted but not decoded. --threads T splits the per-service
// dumps over T sockets on T threads (the kernel serializes IPVS requests on
// genl_mutex; this measures how much of a dump is outside it).
//
// Usage: dump_floor [--threads T] [--slot-bytes B] [--decode [--no-stats]]   (prints one JSON line)
// As NetlinkIpvsClient does, the service dump uses a socket with 64 KiB
// receive slots and the dests dumps the client's read-socket options
// (NetlinkIpvsClient::readSocketOptions), with B-byte slots if given; the
// kernel sizes dump buffers by the slot size, which is what --slot-bytes
// measures.
// --decode also decodes every destination (codec only, no Table), to split
// decode from Table building in dumpTable's user time; --no-stats decodes as
// reconcile does (codec::WithStats::kNo).
#include <linux/genetlink.h>
#include <linux/ip_vs.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "bench/table_gen.h"
#include "ipvs/codec.h"
#include "ipvs/netlink_client.h"
#include "netlink/genl_socket.h"

using namespace kipvs;

namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// One dump request; counts reply messages of the family until NLMSG_DONE.
Status dumpOnce(netlink::GenlSocket& sock, netlink::MessageWriter& w, uint8_t cmd, const ipvs::ServiceKey* key,
                const std::function<void(const netlink::Message&)>& onReply) {
  w.clear();
  const uint32_t seq = sock.seqBase();
  w.beginGenl(sock.familyId(), NLM_F_REQUEST | NLM_F_DUMP, seq, cmd, ipvs::codec::kGenlVersion);
  if (key) KIPVS_RETURN_IF_ERROR(ipvs::codec::putServiceKey(w, *key));
  w.endMessage();
  sock.advanceSeq(1);
  KIPVS_RETURN_IF_ERROR(sock.send(w.bytes()));
  Status result;
  KIPVS_RETURN_IF_ERROR(sock.receive([&](const netlink::Message& m) -> StatusOr<netlink::Next> {
    if (m.seq != seq) return netlink::Next::kMore;
    if (m.type == NLMSG_DONE || m.type == NLMSG_ERROR) return netlink::Next::kDone;
    if (m.type == sock.familyId()) onReply(m);
    return netlink::Next::kMore;
  }));
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const long threads = std::max(1L, kipvs::bench::flagValue(argc, argv, "--threads", 1));
  const bool decode = kipvs::bench::hasFlag(argc, argv, "--decode");
  const auto withStats =
      kipvs::bench::hasFlag(argc, argv, "--no-stats") ? ipvs::codec::WithStats::kNo : ipvs::codec::WithStats::kYes;
  netlink::SocketOptions destOptions = ipvs::NetlinkIpvsClient::readSocketOptions({});
  const long slotBytes =
      kipvs::bench::flagValue(argc, argv, "--slot-bytes", static_cast<long>(destOptions.rxSlotBytes));
  destOptions.rxSlotBytes = static_cast<size_t>(slotBytes);
  std::vector<std::unique_ptr<netlink::GenlSocket>> socks;  // [0]: services; [1..T]: dests
  for (long t = 0; t <= threads; ++t) {
    auto s = netlink::GenlSocket::open("IPVS", t > 0 ? destOptions : netlink::SocketOptions{});
    if (!s.isOk()) {
      std::fprintf(stderr, "%s\n", s.status().toString().c_str());
      return 1;
    }
    socks.push_back(std::move(*s));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto cpu0 = kipvs::bench::cpuNow();
  std::vector<ipvs::ServiceKey> keys;
  netlink::MessageWriter w;
  Status s = dumpOnce(*socks[0], w, IPVS_CMD_GET_SERVICE, nullptr, [&](const netlink::Message& m) {
    auto g = netlink::parseGenl(m);
    if (!g) return;
    auto e = ipvs::codec::decodeServiceMessage(g->attrs);
    if (e) keys.push_back(e->key);
  });
  if (!s.isOk()) {
    std::fprintf(stderr, "%s\n", s.toString().c_str());
    return 1;
  }
  const double servicesMs = msSince(t0);
  std::atomic<uint64_t> messages{0};
  std::atomic<bool> failed{false};
  auto worker = [&](long t) {
    netlink::MessageWriter tw;
    uint64_t n = 0;
    for (size_t i = static_cast<size_t>(t); i < keys.size(); i += static_cast<size_t>(threads)) {
      Status r = dumpOnce(*socks[static_cast<size_t>(t) + 1], tw, IPVS_CMD_GET_DEST, &keys[i], [&](const netlink::Message& m) {
        ++n;
        if (decode) {
          auto g = netlink::parseGenl(m);
          if (g) (void)ipvs::codec::decodeDestMessage(g->attrs, keys[i].family, withStats);
        }
      });
      if (!r.isOk()) {
        std::fprintf(stderr, "%s\n", r.toString().c_str());
        failed = true;
        return;
      }
    }
    messages += n;
  };
  std::vector<std::thread> pool;
  for (long t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();
  const auto cpu1 = kipvs::bench::cpuNow();
  std::printf(
      "{\"phase\":\"dump_floor\",\"slotBytes\":%ld,\"threads\":%ld,\"decode\":%s,\"stats\":%s,\"services\":%zu,\"dests\":%llu,\"ms\":%.1f,"
      "\"servicesMs\":%.1f,\"userMs\":%.1f,\"sysMs\":%.1f}\n",
      slotBytes, threads, decode ? "true" : "false", withStats == ipvs::codec::WithStats::kYes ? "true" : "false", keys.size(), static_cast<unsigned long long>(messages.load()), msSince(t0),
      servicesMs, cpu1.user - cpu0.user, cpu1.sys - cpu0.sys);
  return failed ? 1 : 0;
}
