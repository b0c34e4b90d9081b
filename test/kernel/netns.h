#pragma once
// Kernel tests run each case in a fresh network namespace of their own, so
// cases cannot see each other's IPVS tables and the host's is never touched.

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "ipvs/netlink_client.h"

namespace kipvs::kerneltest {

// Moves the calling thread into a new, empty network namespace.
inline void enterFreshNetns() {
  int rc = unshare(CLONE_NEWNET);
  REQUIRE_MESSAGE(rc == 0, "unshare(CLONE_NEWNET) failed: " << std::strerror(errno)
                                                          << " (kernel tests need root and a kernel with IPVS; "
                                                             "run them through test/vm/with-ipvs.sh)");
  // Bring lo up: some schedulers and local dests want it.
  REQUIRE(std::system("ip link set lo up") == 0);
}

inline std::unique_ptr<ipvs::IpvsClient> openClient() {
  auto c = ipvs::NetlinkIpvsClient::create();
  REQUIRE_MESSAGE(c.isOk(), "IPVS unreachable: " << c.status().toString()
                                                 << " -- a kernel test must not pass without a real IPVS kernel");
  return std::move(*c);
}

// Runs a shell command in the current namespace and returns its stdout.
inline std::string run(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE_MESSAGE(p != nullptr, "popen " << cmd);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = pclose(p);
  if (status) {
    *status = rc;
  } else {
    REQUIRE_MESSAGE(rc == 0, cmd << " exited with " << rc << ": " << out);
  }
  return out;
}

inline std::multiset<std::string> lines(const std::string& text) {
  std::multiset<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.insert(l);
  }
  return out;
}

// The lines only one side has, for a readable failure.
inline std::string lineDiff(const std::multiset<std::string>& got, const std::multiset<std::string>& want) {
  std::string out;
  for (const auto& l : got)
    if (!want.count(l)) out += "  only in first:  " + l + "\n";
  for (const auto& l : want)
    if (!got.count(l)) out += "  only in second: " + l + "\n";
  return out;
}

}  // namespace kipvs::kerneltest
