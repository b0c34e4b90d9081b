// Runs one command and prints one JSON line: wall time (ms) and the child's
// peak RSS (ru_maxrss, KB), user and system CPU (ms), exit code, and the time of
// day (s, UTC) at the fork and once reaped.
//
// Usage: rusage_exec [--netns PATH] [--stdin FILE] [--stdout FILE] [--label TEXT] -- CMD [ARGS...]
//   --netns PATH   setns(CLONE_NEWNET) into PATH (e.g. /run/netns/NAME) in the child before exec
//   --stdin FILE   the child's stdin (default: inherited)
//   --stdout FILE  the child's stdout, truncated (default: inherited; the JSON line then follows its output)
//
// Why not Python's getrusage(RUSAGE_CHILDREN) or os.wait4: ru_maxrss is a
// per-process high-water mark that survives exec, and fork() starts it at the
// parent's resident anonymous memory (dup_mm copies hiwater_rss; exec_mmap
// folds the old mm's peak into signal->maxrss). A child forked from Python
// reports Python's heap (~10 MB, 60 MB if the driver holds data) as its own
// peak. This helper forks from a process of a few hundred KB, so the number is
// the command's own.
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// The time of day in seconds, as glog stamps its lines: a child's log then
// says how long its start and its exit took.
double dayClock() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec % 86400) + ts.tv_nsec / 1e9;
}

double tvMs(const timeval& tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

// Minimal JSON string escaping for the label.
void putJsonString(const char* s) {
  std::putchar('"');
  for (; *s; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      std::printf("\\%c", c);
    } else if (c < 0x20) {
      std::printf("\\u%04x", c);
    } else {
      std::putchar(c);
    }
  }
  std::putchar('"');
}

int usage() {
  std::fprintf(stderr, "usage: rusage_exec [--netns PATH] [--stdin FILE] [--stdout FILE] [--label TEXT] -- CMD [ARGS...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const char* netns = nullptr;
  const char* in = nullptr;
  const char* out = nullptr;
  const char* label = "";
  int i = 1;
  for (; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--") == 0) {
      ++i;
      break;
    }
    if (i + 1 >= argc) return usage();
    if (std::strcmp(a, "--netns") == 0) {
      netns = argv[++i];
    } else if (std::strcmp(a, "--stdin") == 0) {
      in = argv[++i];
    } else if (std::strcmp(a, "--stdout") == 0) {
      out = argv[++i];
    } else if (std::strcmp(a, "--label") == 0) {
      label = argv[++i];
    } else {
      return usage();
    }
  }
  if (i >= argc) return usage();
  char** cmd = argv + i;

  std::fflush(stdout);
  const double t0 = nowMs();
  const double forked = dayClock();
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 2;
  }
  if (pid == 0) {
    if (netns != nullptr) {
      const int fd = open(netns, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "rusage_exec: setns %s: %s\n", netns, std::strerror(errno));
        _exit(126);
      }
      close(fd);
    }
    if (in != nullptr) {
      const int fd = open(in, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || dup2(fd, 0) < 0) {
        std::fprintf(stderr, "rusage_exec: %s: %s\n", in, std::strerror(errno));
        _exit(126);
      }
    }
    if (out != nullptr) {
      const int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0 || dup2(fd, 1) < 0) {
        std::fprintf(stderr, "rusage_exec: %s: %s\n", out, std::strerror(errno));
        _exit(126);
      }
    }
    execvp(cmd[0], cmd);
    std::fprintf(stderr, "rusage_exec: %s: %s\n", cmd[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      std::perror("wait4");
      return 2;
    }
  }
  const double wall = nowMs() - t0;
  const double ended = dayClock();
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::printf("{\"tool\":\"rusage_exec\",\"label\":");
  putJsonString(label);
  std::printf(",\"rc\":%d,\"wall_ms\":%.1f,\"maxrss_kb\":%ld,\"user_ms\":%.1f,\"sys_ms\":%.1f,\"forked_s\":%.6f,"
              "\"reaped_s\":%.6f}\n",
              rc, wall, ru.ru_maxrss, tvMs(ru.ru_utime), tvMs(ru.ru_stime), forked, ended);
  return 0;
}
