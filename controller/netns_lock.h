#pragma once
// One writer per IPVS table. Two reconciles of the same node at once (a cron
// run and a hand run, say) would each plan against a table the other is
// changing, and interleave their writes: whichever wrote last would win, op by
// op. kipvs takes this lock before it reads the table it will write, and
// holds it until it exits (the node agent will hold it while it runs).
//
// The lock is an abstract UNIX socket bound under a fixed name. Abstract names
// belong to the network namespace, as the IPVS table does, so kipvs in other
// namespaces never waits on it; and the kernel frees the name when the holder
// exits, however it exits, so a crash or a kill -9 leaves nothing stale (a
// lock file would). The holder listens, so that a waiter can name it (its pid,
// from SO_PEERCRED) when it gives up.
//
// Any process may bind an abstract name, so an unprivileged one could take
// the name first and stop every kipvs on the node. The lock only keeps kipvs
// runs apart, and each of those can change the IPVS table (CAP_NET_ADMIN in
// the user namespace that owns this network namespace) and listens on the
// name from the moment it binds it: a holder that cannot, or does not, or
// whose listening process is gone, is not one of them, and is not waited for.

#include <chrono>
#include <string>
#include <string_view>

#include "controller/sleeper.h"
#include "netlink/status.h"

namespace kipvs::controller {

// "kipvs-ipvs": the name every kipvs that writes the IPVS table takes.
inline constexpr std::string_view kIpvsLockName = "kipvs-ipvs";

class NetnsLock {
 public:
  // Takes the lock `name` in this network namespace, trying again every
  // `poll` until `timeout` has passed (0: one try). EBUSY when another
  // process holds it, with that process's pid in the message when known.
  // A holder that is no kipvs (see above; seen so twice, a poll apart) is not
  // waited for: the result then holds nothing, and warning() says who holds
  // the name and why it is no kipvs.
  static StatusOr<NetnsLock> acquire(std::string_view name, std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds poll, const Sleeper& sleep);

  // Set when the name is held by a process that cannot change the IPVS table.
  const std::string& warning() const { return warning_; }
  bool held() const { return fd_ >= 0; }

  NetnsLock(NetnsLock&& o) noexcept : fd_(o.fd_), warning_(std::move(o.warning_)) { o.fd_ = -1; }
  NetnsLock& operator=(NetnsLock&& o) noexcept;
  NetnsLock(const NetnsLock&) = delete;
  NetnsLock& operator=(const NetnsLock&) = delete;
  ~NetnsLock();

 private:
  explicit NetnsLock(int fd, std::string warning = {}) : fd_(fd), warning_(std::move(warning)) {}
  int fd_ = -1;
  std::string warning_;
};

}  // namespace kipvs::controller
