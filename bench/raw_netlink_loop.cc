// Reference: program N services x M dests the way ipvsadm does, one request
// and one ack at a time with plain libnl genl (fresh nl_msg per request,
// nl_send_auto + nl_wait_for_ack). Compare with bench/kipvs_program.
//
// Usage: raw_netlink_loop [--services N] [--dests M] [--unshare] [--flush]
// Prints one JSON line.
#include <arpa/inet.h>
#include <linux/ip_vs.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>  // libnl's (ours is netlink/genl_socket.h)

#include <chrono>
#include <cstdio>
#include <cstring>

#include "bench/table_gen.h"

namespace {

void putAddr(nl_msg* msg, int type, uint32_t hostOrder) {
  uint8_t addr[16] = {};
  uint32_t be = htonl(hostOrder);
  std::memcpy(addr, &be, 4);
  nla_put(msg, type, sizeof addr, addr);
}

void putServiceKey(nl_msg* msg, uint32_t vip) {
  nla_put_u16(msg, IPVS_SVC_ATTR_AF, AF_INET);
  nla_put_u16(msg, IPVS_SVC_ATTR_PROTOCOL, IPPROTO_TCP);
  putAddr(msg, IPVS_SVC_ATTR_ADDR, vip);
  nla_put_u16(msg, IPVS_SVC_ATTR_PORT, htons(kipvs::bench::kPort));
}

// One request, one ack. Returns the libnl error (0 on success).
int roundTrip(nl_sock* sk, nl_msg* msg) {
  int err = nl_send_auto(sk, msg);
  nlmsg_free(msg);
  if (err < 0) return err;
  return nl_wait_for_ack(sk);
}

}  // namespace

int main(int argc, char** argv) {
  using kipvs::bench::flagValue;
  const long services = flagValue(argc, argv, "--services", 1000);
  const long dests = flagValue(argc, argv, "--dests", 10);
  if (kipvs::bench::hasFlag(argc, argv, "--unshare") && !kipvs::bench::enterFreshNetns()) return 1;
  nl_sock* sk = nl_socket_alloc();
  if (sk == nullptr || genl_connect(sk) < 0) {
    std::fprintf(stderr, "cannot open a generic netlink socket\n");
    return 1;
  }
  int family = genl_ctrl_resolve(sk, IPVS_GENL_NAME);
  if (family < 0) {
    std::fprintf(stderr, "IPVS family not found: %s\n", nl_geterror(family));
    return 1;
  }
  if (kipvs::bench::hasFlag(argc, argv, "--flush")) {
    nl_msg* msg = nlmsg_alloc();
    genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, IPVS_CMD_FLUSH, IPVS_GENL_VERSION);
    if (int err = roundTrip(sk, msg); err < 0) std::fprintf(stderr, "flush: %s\n", nl_geterror(err));
  }

  long ops = 0, errors = 0;
  const auto cpu0 = kipvs::bench::cpuNow();
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < services; ++i) {
    const uint32_t vip = kipvs::bench::vipFor(static_cast<uint32_t>(i));
    nl_msg* msg = nlmsg_alloc();
    genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, IPVS_CMD_NEW_SERVICE, IPVS_GENL_VERSION);
    nlattr* nest = nla_nest_start(msg, IPVS_CMD_ATTR_SERVICE);
    putServiceKey(msg, vip);
    nla_put_string(msg, IPVS_SVC_ATTR_SCHED_NAME, "rr");
    ip_vs_flags flags{0, ~0u};
    nla_put(msg, IPVS_SVC_ATTR_FLAGS, sizeof flags, &flags);
    nla_put_u32(msg, IPVS_SVC_ATTR_TIMEOUT, 0);
    nla_put_u32(msg, IPVS_SVC_ATTR_NETMASK, 0xffffffffu);
    nla_nest_end(msg, nest);
    ++ops;
    if (roundTrip(sk, msg) < 0) ++errors;

    for (long j = 0; j < dests; ++j) {
      msg = nlmsg_alloc();
      genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, IPVS_CMD_NEW_DEST, IPVS_GENL_VERSION);
      nest = nla_nest_start(msg, IPVS_CMD_ATTR_SERVICE);
      putServiceKey(msg, vip);
      nla_nest_end(msg, nest);
      nest = nla_nest_start(msg, IPVS_CMD_ATTR_DEST);
      putAddr(msg, IPVS_DEST_ATTR_ADDR,
              kipvs::bench::destFor(static_cast<uint32_t>(i), static_cast<uint32_t>(j), static_cast<uint32_t>(dests)));
      nla_put_u16(msg, IPVS_DEST_ATTR_PORT, htons(kipvs::bench::kPort));
      nla_put_u16(msg, IPVS_DEST_ATTR_ADDR_FAMILY, AF_INET);
      nla_put_u32(msg, IPVS_DEST_ATTR_FWD_METHOD, IP_VS_CONN_F_MASQ);
      nla_put_u32(msg, IPVS_DEST_ATTR_WEIGHT, 1);
      nla_put_u32(msg, IPVS_DEST_ATTR_U_THRESH, 0);
      nla_put_u32(msg, IPVS_DEST_ATTR_L_THRESH, 0);
      nla_nest_end(msg, nest);
      ++ops;
      if (roundTrip(sk, msg) < 0) ++errors;
    }
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto cpu1 = kipvs::bench::cpuNow();
  std::printf(
      "{\"tool\":\"raw_netlink_loop\",\"phase\":\"apply\",\"services\":%ld,\"dests\":%ld,\"ops\":%ld,"
      "\"errors\":%ld,\"ms\":%.1f,\"user_ms\":%.1f,\"sys_ms\":%.1f,\"sends\":%ld}\n",
      services, services * dests, ops, errors, ms, cpu1.user - cpu0.user, cpu1.sys - cpu0.sys, ops);
  nl_socket_free(sk);
  return errors == 0 ? 0 : 2;
}
