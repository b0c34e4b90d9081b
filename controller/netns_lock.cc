#include "controller/netns_lock.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>

namespace kipvs::controller {
namespace {

// The abstract address of `name`: a NUL, then the name (not NUL-terminated).
socklen_t abstractAddress(std::string_view name, sockaddr_un& a) {
  std::memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

struct Holder {
  pid_t pid = 0;  // 0: unknown
  uid_t uid = 0;
};

// The process listening on `name` (pid 0 if it cannot be learned).
// The connection is never accepted and stays queued at the holder; once its
// queue is full a blocking connect would wait for the holder forever, so this
// one does not block (EAGAIN: the pid stays unknown).
Holder holderOf(std::string_view name) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return {};
  sockaddr_un a;
  const socklen_t len = abstractAddress(name, a);
  Holder h;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), len) == 0) {
    ucred cred = {};
    socklen_t credLen = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) == 0) h = {cred.pid, cred.uid};
  }
  ::close(fd);
  return h;
}

// Whether pid's effective capabilities (/proc/PID/status, CapEff) lack
// CAP_NET_ADMIN; nullopt when that cannot be read (another pid namespace, say).
std::optional<bool> lacksNetAdmin(pid_t pid) {
  constexpr int kCapNetAdmin = 12;  // linux/capability.h
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    try {
      return (std::stoull(line.substr(7), nullptr, 16) & (uint64_t{1} << kCapNetAdmin)) == 0;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

StatusOr<NetnsLock> NetnsLock::acquire(std::string_view name, std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds poll, const Sleeper& sleep) {
  sockaddr_un a;
  if (name.empty() || name.size() > sizeof(a.sun_path) - 1) {
    return Status::invalid("lock name \"" + std::string(name) + "\": 1.." + std::to_string(sizeof(a.sun_path) - 1) +
                           " bytes");
  }
  const socklen_t len = abstractAddress(name, a);
  std::chrono::milliseconds waited{0};
  bool holderChecked = false;
  for (;;) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::error(Code::kIo, "lock " + std::string(name) + ": socket", errno);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0) {
      // Listening lets a waiter ask who holds it (holderOf); nothing is ever
      // accepted, so the queue keeps the first ~64 that asked, and waiters
      // after them learn no pid.
      if (::listen(fd, 64) != 0) {
        const int e = errno;
        ::close(fd);
        return Status::error(Code::kIo, "lock " + std::string(name) + ": listen", e);
      }
      return NetnsLock(fd);
    }
    const int e = errno;
    ::close(fd);
    if (e != EADDRINUSE) return Status::error(Code::kIo, "lock " + std::string(name) + ": bind", e);
    if (!holderChecked) {
      // Once (each look leaves a connection queued at the holder).
      holderChecked = true;
      const Holder h = holderOf(name);
      if (h.pid > 0 && h.pid != ::getpid() && lacksNetAdmin(h.pid).value_or(false)) {
        return NetnsLock(-1, "process " + std::to_string(h.pid) + " (uid " + std::to_string(h.uid) +
                                 ") holds the lock \"" + std::string(name) +
                                 "\" but cannot change the IPVS table (no CAP_NET_ADMIN), so it is no kipvs: "
                                 "going on without the lock");
      }
    }
    if (waited >= timeout) {
      const pid_t pid = holderOf(name).pid;
      std::string who = pid > 0 ? "process " + std::to_string(pid) : "another process";
      return Status::error(Code::kTimeout,
                           who + " holds the lock \"" + std::string(name) +
                               "\" on this network namespace's IPVS table (another kipvs at work?); waited " +
                               std::to_string(waited.count() / 1000) + "." + std::to_string(waited.count() % 1000 / 100) +
                               " s",
                           EBUSY);
    }
    const auto step = std::min(poll, timeout - waited);
    sleep(step);
    waited += step;
  }
}

NetnsLock& NetnsLock::operator=(NetnsLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
    warning_ = std::move(o.warning_);
  }
  return *this;
}

NetnsLock::~NetnsLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace kipvs::controller
