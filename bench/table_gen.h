#pragma once
// The benchmark table, the same for every program that programs it: service i
// (0-based) is TCP VIP:80 with VIP = 10.0.0.0 + i + 1 (unique for i < 2^24 - 1),
// its dest j is 172.16.0.0 + (i * dests + j + 1) mod 2^20 inside 172.16.0.0/12
// (unique while services * dests < 2^20), port 80, masq, weight 1, scheduler rr.

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kipvs::bench {

inline uint32_t vipFor(uint32_t i) { return 0x0A000000u + i + 1; }
inline uint32_t destFor(uint32_t i, uint32_t j, uint32_t dests) {
  return 0xAC100000u + ((i * dests + j + 1) & 0xFFFFFu);
}
inline constexpr uint16_t kPort = 80;

// "--name=value" or "--name value"; returns fallback when absent.
inline long flagValue(int argc, char** argv, const char* name, long fallback) {
  size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], name, n) != 0) continue;
    if (argv[i][n] == '=') return std::strtol(argv[i] + n + 1, nullptr, 10);
    if (argv[i][n] == '\0' && i + 1 < argc) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}
// A fresh network namespace with loopback up. IPVS rejects IPv4 dests with
// EINVAL in a namespace whose local routing table does not exist yet
// (inet_addr_type() answers RTN_BROADCAST), and bringing lo up creates it.
inline bool enterFreshNetns() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return false;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP;
  ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  if (!ok) std::perror("bringing lo up");
  close(fd);
  return ok;
}

// User and system CPU time of this process so far, in ms: the kernel runs
// IPVS handlers inside our syscalls, so system time is the kernel's work.
struct CpuMs {
  double user = 0, sys = 0;
};
inline CpuMs cpuNow() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3, ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3};
}

inline bool hasFlag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

}  // namespace kipvs::bench
