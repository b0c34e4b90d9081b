#include "controller/netns_lock.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
  bool listening = true;  // false: the name is bound, but nobody listens on it
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
  } else if (errno == ECONNREFUSED) {
    h.listening = false;
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

// Whether pid's user namespace is the one that owns this network namespace,
// or one above it: only there do its capabilities reach this namespace's
// IPVS table (a user in a user namespace of its own has all of them, over
// nothing of ours). nullopt when that cannot be learned.
std::optional<bool> userNamespaceRulesNetns(pid_t pid) {
  struct stat holder;
  if (::stat(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), &holder) != 0) return std::nullopt;
  const int net = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (net < 0) return std::nullopt;
  int user = ::ioctl(net, NS_GET_USERNS);
  ::close(net);
  if (user < 0) return std::nullopt;
  bool found = false;
  while (user >= 0 && !found) {  // from the owner up, as far as we may look
    struct stat st;
    found = ::fstat(user, &st) == 0 && st.st_dev == holder.st_dev && st.st_ino == holder.st_ino;
    const int parent = found ? -1 : ::ioctl(user, NS_GET_PARENT);
    ::close(user);
    user = parent;
  }
  if (found) return true;
  // The walk stops at the top of what we may see: the top of all only if we
  // are in the initial user namespace (its uid_map maps every uid to itself).
  std::ifstream map("/proc/self/uid_map");
  uint64_t inside = 1, outside = 1, count = 0;
  if (map >> inside >> outside >> count && inside == 0 && outside == 0 && count == 4294967295u) return false;
  return std::nullopt;
}

// Why the process holding `name` is no kipvs, if it can be told: it does not
// listen (kipvs listens at once), the process that listens is gone (the
// socket lives on in another), or it cannot change this network namespace's
// IPVS table (no CAP_NET_ADMIN where that counts).
std::optional<std::string> notKipvs(std::string_view name) {
  const Holder h = holderOf(name);
  const std::string lock = "the lock \"" + std::string(name) + "\"";
  if (!h.listening) return "a process holds " + lock + " without listening on it, as kipvs does, so it is no kipvs";
  if (h.pid <= 0 || h.pid == ::getpid()) return std::nullopt;
  const std::string who = "process " + std::to_string(h.pid) + " (uid " + std::to_string(h.uid) + ")";
  if (::kill(h.pid, 0) != 0 && errno == ESRCH) {
    return who + " made " + lock + " and is gone; the process it left it to is no kipvs";
  }
  const std::optional<bool> rules = userNamespaceRulesNetns(h.pid);
  const std::optional<bool> lacks = lacksNetAdmin(h.pid);
  if ((rules && !*rules) || (lacks && *lacks)) {
    return who + " holds " + lock + " but cannot change the IPVS table (no CAP_NET_ADMIN" +
           (rules && !*rules ? " in this network namespace's user namespace" : "") + "), so it is no kipvs";
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
  int looks = 0;  // at the holder: each leaves a connection queued there
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
    if (looks < 2) {
      // A holder that is no kipvs is not waited for; seen so twice, a poll
      // apart, so that a kipvs between its bind and its listen, or one that
      // has just exited, is not taken for one.
      const std::optional<std::string> why = notKipvs(name);
      looks = why ? looks + 1 : 2;
      if (why && looks == 2) return NetnsLock(-1, *why + ": going on without the lock");
      if (why) {
        sleep(poll);
        waited += poll;
        continue;
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
