#pragma once
// Waiting, injectable so that tests do not wait: reconcile's retries and drain
// polls, and the IPVS table lock's polls (netns_lock.h).

#include <chrono>
#include <functional>
#include <thread>

namespace kipvs::controller {

using Sleeper = std::function<void(std::chrono::milliseconds)>;

// The real one.
inline void sleepFor(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

}  // namespace kipvs::controller
