// NetnsLock: one holder per name and network namespace, waiting by polling,
// the holder named when a waiter gives up, and the name freed with the holder.

#include "controller/netns_lock.h"

#include <doctest/doctest.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

namespace kipvs::controller {
namespace {

using std::chrono::milliseconds;

// A name no other test process uses.
std::string testName(const char* what) { return std::string("kipvs-test-") + what + "-" + std::to_string(getpid()); }

StatusOr<NetnsLock> tryOnce(const std::string& name) {
  return NetnsLock::acquire(name, milliseconds(0), milliseconds(100), [](milliseconds) { FAIL("slept"); });
}

TEST_CASE("NetnsLock: one holder; the next names it and gives up at once with timeout 0") {
  const std::string name = testName("once");
  auto first = tryOnce(name);
  REQUIRE(first.isOk());
  auto second = tryOnce(name);
  REQUIRE_FALSE(second.isOk());
  CHECK(second.status().code() == Code::kTimeout);
  CHECK(second.status().errnum() == EBUSY);
  CHECK(second.status().message().find("process " + std::to_string(getpid())) != std::string::npos);
  CHECK(second.status().message().find("\"" + name + "\"") != std::string::npos);
  // Each waiter that gives up asks who holds it, over a connection the holder
  // never accepts: more of them than its queue holds must not hang (the pid
  // is then unknown).
  for (int i = 0; i < 200; ++i) {
    auto again = tryOnce(name);
    REQUIRE_FALSE(again.isOk());
    CHECK(again.status().errnum() == EBUSY);
  }
  // Another name is another lock.
  CHECK(tryOnce(name + "-other").isOk());
}

TEST_CASE("NetnsLock: the name is free again once the holder is gone, not before (moves keep it)") {
  const std::string name = testName("release");
  {
    auto held = tryOnce(name);
    REQUIRE(held.isOk());
    NetnsLock moved = std::move(*held);
    CHECK_FALSE(tryOnce(name).isOk());  // the moved-from object released nothing
    NetnsLock assigned = std::move(moved);
    CHECK_FALSE(tryOnce(name).isOk());
  }
  CHECK(tryOnce(name).isOk());
}

TEST_CASE("NetnsLock: a waiter polls until the holder lets go, and gives up when the timeout is spent") {
  const std::string name = testName("wait");
  std::optional<NetnsLock> holder;
  {
    auto h = tryOnce(name);
    REQUIRE(h.isOk());
    holder.emplace(std::move(*h));
  }
  // The holder lets go during the third sleep: the fourth try gets it.
  int sleeps = 0;
  milliseconds slept{0};
  auto got = NetnsLock::acquire(name, milliseconds(1000), milliseconds(100), [&](milliseconds d) {
    slept += d;
    if (++sleeps == 3) holder.reset();
  });
  CHECK(got.isOk());
  CHECK(sleeps == 3);
  CHECK(slept == milliseconds(300));

  // Held throughout: sleeps up to the timeout, the last step cut short, then gives up.
  sleeps = 0;
  slept = milliseconds(0);
  auto late = NetnsLock::acquire(name, milliseconds(250), milliseconds(100), [&](milliseconds d) {
    slept += d;
    ++sleeps;
  });
  REQUIRE_FALSE(late.isOk());
  CHECK(late.status().errnum() == EBUSY);
  CHECK(sleeps == 3);
  CHECK(slept == milliseconds(250));
  CHECK(late.status().message().find("waited 0.2 s") != std::string::npos);
}

TEST_CASE("NetnsLock: names the lock can not take are refused") {
  CHECK(tryOnce("").status().code() == Code::kInvalid);
  CHECK(tryOnce(std::string(200, 'x')).status().code() == Code::kInvalid);
}

TEST_CASE("NetnsLock: another network namespace has its own (needs CAP_SYS_ADMIN: unit tests run as root)") {
  const std::string name = testName("netns");
  auto here = tryOnce(name);
  REQUIRE(here.isOk());
  // A thread of its own moves to a new network namespace; the process stays where it is.
  int unshareErrno = 0;
  bool tookThere = false;
  std::thread([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      unshareErrno = errno;
      return;
    }
    tookThere = tryOnce(name).isOk();
  }).join();
  REQUIRE_MESSAGE(unshareErrno == 0, "unshare(CLONE_NEWNET) failed: run the unit tests as root");
  CHECK(tookThere);
  CHECK_FALSE(tryOnce(name).isOk());  // still held here
}

// A child that holds `name` for as long as this lives (its pid in `pid`), as
// kipvs does or the way a squatter would.
enum class Squat {
  kNetAdmin,        // as kipvs: takes the lock, with CAP_NET_ADMIN
  kNoNetAdmin,      // takes the lock without CAP_NET_ADMIN in its effective set
  kBindOnly,        // uid nobody, binds the name and never listens
  kListenerLeaves,  // no CAP_NET_ADMIN; listens, forks, and the listening process exits (its child keeps the socket)
  kOwnUserns,       // uid nobody in a user namespace of its own (all capabilities there), this network namespace
};
struct LockHolder {
  pid_t pid = -1;
  int release = -1;
  // kOwnUserns where this process may make no user namespace: in a chroot
  // (EPERM), or multithreaded, as TSan's runtime makes a forked child
  // (EINVAL). No one can squat that way here either.
  bool noUserNamespaces = false;
  LockHolder(const std::string& name, Squat how) {
    int ready[2], go[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(go) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      if (how == Squat::kBindOnly || how == Squat::kOwnUserns) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(7);
      } else if (how != Squat::kNetAdmin) {
        __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (::syscall(SYS_capget, &hdr, data) != 0) ::_exit(3);
        data[0].effective &= ~(1u << CAP_NET_ADMIN);
        if (::syscall(SYS_capset, &hdr, data) != 0) ::_exit(4);
      }
      if (how == Squat::kOwnUserns && ::unshare(CLONE_NEWUSER) != 0) ::_exit(8);
      std::optional<NetnsLock> held;  // until _exit, in this process and the child it may fork
      if (how == Squat::kBindOnly) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path + 1, name.data(), name.size());
        if (::bind(fd, reinterpret_cast<sockaddr*>(&a), offsetof(sockaddr_un, sun_path) + 1 + name.size()) != 0) {
          ::_exit(5);
        }
      } else {
        auto lock = NetnsLock::acquire(name, milliseconds(0), milliseconds(1), [](milliseconds) {});
        if (!lock.isOk() || !lock->held()) ::_exit(5);
        held.emplace(std::move(*lock));
      }
      if (how == Squat::kListenerLeaves) {
        const pid_t child = ::fork();
        if (child < 0) ::_exit(9);
        if (child > 0) ::_exit(0);
      }
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(6);
      (void)::read(go[0], &c, 1);
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(go[0]);
    release = go[1];
    char c = 0;
    if (::read(ready[0], &c, 1) != 1) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      pid = -1;
      noUserNamespaces = how == Squat::kOwnUserns && WIFEXITED(status) && WEXITSTATUS(status) == 8;
      ::close(ready[0]);
      if (!noUserNamespaces) FAIL("the squatter did not start: exit " << WEXITSTATUS(status));
      return;
    }
    ::close(ready[0]);
    if (how == Squat::kListenerLeaves) {  // reaped, as its shell would: its pid is gone
      int status = 0;
      ::waitpid(pid, &status, 0);
      pid = -1;
    }
  }
  ~LockHolder() {
    ::close(release);
    int status = 0;
    if (pid <= 0) return;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
};

TEST_CASE("NetnsLock: a holder without CAP_NET_ADMIN is no kipvs and is not waited for (unit tests run as root)") {
  const std::string name = testName("squat");
  {
    LockHolder squatter(name, Squat::kNoNetAdmin);
    int sleeps = 0;  // one poll between the two looks at the holder, no more
    auto lock = NetnsLock::acquire(name, milliseconds(30000), milliseconds(100), [&](milliseconds) { ++sleeps; });
    CHECK(sleeps == 1);
    REQUIRE(lock.isOk());
    CHECK_FALSE(lock->held());
    CHECK(lock->warning().find("process " + std::to_string(squatter.pid)) != std::string::npos);
    CHECK(lock->warning().find("no CAP_NET_ADMIN") != std::string::npos);
    NetnsLock moved = std::move(*lock);  // the warning goes with it
    CHECK(moved.warning().find("process " + std::to_string(squatter.pid)) != std::string::npos);
    auto other = tryOnce(name + "-other");
    REQUIRE(other.isOk());
    *other = std::move(moved);
    CHECK(other->warning().find("no CAP_NET_ADMIN") != std::string::npos);
    CHECK_FALSE(other->held());
  }
  {
    // One that could write the table is waited for, as before.
    LockHolder holder(name, Squat::kNetAdmin);
    auto lock = tryOnce(name);
    REQUIRE_FALSE(lock.isOk());
    CHECK(lock.status().errnum() == EBUSY);
    CHECK(lock.status().message().find("process " + std::to_string(holder.pid)) != std::string::npos);
  }
  // Free again: taken for real.
  auto lock = tryOnce(name);
  REQUIRE(lock.isOk());
  CHECK(lock->held());
  CHECK(lock->warning().empty());
}

TEST_CASE("NetnsLock: squatters that are no kipvs are not waited for, however they hold the name (runs as root)") {
  struct Case {
    const char* name;
    Squat how;
    const char* says;
  } cases[] = {
      {"bound, never listening", Squat::kBindOnly, "without listening on it"},
      {"its listening process gone", Squat::kListenerLeaves, "and is gone"},
      {"in a user namespace of its own", Squat::kOwnUserns, "no CAP_NET_ADMIN in this network namespace's user namespace"},
  };
  for (const Case& tc : cases) {
    CAPTURE(tc.name);
    const std::string name = testName("squatter") + "-" + std::to_string(&tc - cases);
    LockHolder squatter(name, tc.how);
    if (squatter.noUserNamespaces) {
      MESSAGE("no user namespace can be made here (a chroot, or TSan's thread): case not set up");
      continue;
    }
    int sleeps = 0;
    auto lock = NetnsLock::acquire(name, milliseconds(30000), milliseconds(100), [&](milliseconds) { ++sleeps; });
    REQUIRE_MESSAGE(lock.isOk(), lock.status().toString());
    CHECK_FALSE(lock->held());
    CHECK_MESSAGE(lock->warning().find(tc.says) != std::string::npos, lock->warning());
    CHECK(sleeps == 1);
  }
}

}  // namespace
}  // namespace kipvs::controller
