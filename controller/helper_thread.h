#pragma once
// Helper threads that split CPU work (parsing, computeDesired) run at the
// lowest priority. In a reconcile of an unchanged table the thread reading
// that table from the kernel is the long pole: the helpers should take only
// the CPU it leaves (measured in the VM: a no-op reconcile 0.2-0.4 s faster
// at 10,000 Services). With CPUs to spare, priority changes nothing.

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <system_error>
#include <thread>
#include <utility>

namespace kipvs::controller {

// Linux: the nice value is per thread (setpriority(2), PRIO_PROCESS with a
// thread id). Raising it needs no privilege; a failure changes nothing.
inline void lowerThisThreadPriority() { (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19); }

// Whether splitting work over a helper thread can pay off at all.
inline bool haveSpareCpu() { return std::thread::hardware_concurrency() >= 2; }

// Runs `work` on a helper thread at the lowest priority. The thread is not
// joinable when none could be started: the caller then does the work itself.
template <typename Work>
std::thread startHelper(Work&& work) {
  try {
    return std::thread([w = std::forward<Work>(work)]() mutable {
      lowerThisThreadPriority();
      w();
    });
  } catch (const std::system_error&) {
    return std::thread();
  }
}

// Runs task(0) .. task(count - 1), each once, in that order of taking: this
// thread and, when withHelper, a helper (startHelper) take them from a shared
// cursor. A starved helper costs no waiting: this thread takes whatever the
// helper has not. Returns when all are done.
template <typename Task>
void shareOut(size_t count, bool withHelper, const Task& task) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) task(i);
  };
  std::thread worker;
  if (withHelper) worker = startHelper(work);
  work();
  if (worker.joinable()) worker.join();
}

}  // namespace kipvs::controller
