#pragma once
// Pieces the parse and YAML fuzzers share.

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "controller/k8s.h"
#include "test/controller/cluster_dump.h"

namespace kipvs::fuzz {

// A hash of the input that picks a run's settings, so a finding reproduces exactly.
inline uint64_t fnv1a(const uint8_t* d, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ d[i]) * 1099511628211ULL;
  return h;
}

// A parse result as text: the canonical rendering, or the status.
inline std::string render(const StatusOr<controller::Cluster>& c) {
  if (!c) return "status " + c.status().toString() + "\n";
  return controller::testing::dumpCluster(*c);
}

// One file, rewritten for every input; its name's suffix (".json", ".yaml")
// decides how parseFile reads it.
struct TempFile {
  std::string path;
  int fd = -1;
  TempFile(const char* stem, const char* suffix) {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path = std::string(dir) + "/" + stem + "-" + std::to_string(::getpid()) + suffix;
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::perror("open temp file");
      std::abort();
    }
  }
  ~TempFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  void write(std::string_view d) {
    if (::ftruncate(fd, 0) != 0) std::abort();
    size_t done = 0;
    while (done < d.size()) {
      ssize_t w = ::pwrite(fd, d.data() + done, d.size() - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<size_t>(w);
    }
  }
};

}  // namespace kipvs::fuzz
