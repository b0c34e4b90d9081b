#include "controller/host.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>

namespace kipvs::controller {

const char* vipModeName(VipMode m) {
  switch (m) {
    case VipMode::kRoute:
      return "route";
    case VipMode::kAddress:
      return "address";
  }
  return "?";
}

bool isNodeAddressCandidate(const ipvs::Address& addr) {
  const auto& b = addr.bytes;
  if (addr.isUnspecified()) return false;
  if (addr.isV4()) {
    if (b[0] == 127) return false;  // loopback
    if (b[0] >= 224) return false;  // multicast, reserved, broadcast
    return true;
  }
  if (b[0] == 0xff) return false;  // multicast
  if (isIpv6LinkLocal(addr)) return false;
  bool loopback = b[15] == 1;
  for (size_t i = 0; i < 15 && loopback; ++i) loopback = b[i] == 0;
  return !loopback;
}

bool isIpv6LinkLocal(const ipvs::Address& addr) {
  return !addr.isV4() && addr.bytes[0] == 0xfe && (addr.bytes[1] & 0xc0) == 0x80;
}

Status validateBindable(const ipvs::Address& addr, const std::string& what) {
  if (addr.isUnspecified()) return Status::invalid(what + ": unspecified address");
  if (isIpv6LinkLocal(addr)) return Status::invalid(what + ": IPv6 link-local address");
  return Status::ok();
}

StatusOr<std::string> readWholeFile(const std::string& path) {
  const std::string what = "read " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::kernel(errno, what);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int readErrno = errno;
      ::close(fd);
      return Status::kernel(readErrno, what);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

StatusOr<KernelVersion> parseKernelRelease(std::string_view release) {
  // Leading "major.minor[.patch]"; whatever follows (-18-amd64, +, rc1) is
  // distribution decoration.
  KernelVersion v;
  int* parts[] = {&v.major, &v.minor, &v.patch};
  const char* p = release.data();
  const char* end = p + release.size();
  int parsed = 0;
  for (int* part : parts) {
    if (parsed > 0) {
      if (p == end || *p != '.') break;
      ++p;
    }
    auto [next, ec] = std::from_chars(p, end, *part);
    if (ec != std::errc()) {
      if (parsed < 2) break;
      *part = 0;
      break;
    }
    p = next;
    ++parsed;
  }
  if (parsed < 2) {
    return Status::error(Code::kParse, "kernel release \"" + std::string(release) + "\": want major.minor[.patch]");
  }
  return v;
}

ConnReuseAction connReuseActionFor(const KernelVersion& v) {
  if (v < KernelVersion{4, 1, 0}) return ConnReuseAction::kUnsupported;
  if (v < KernelVersion{5, 9, 0}) return ConnReuseAction::kSetZero;
  return ConnReuseAction::kLeave;
}

namespace {

std::string trim(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Reads first and writes only on a difference: a needless write to a sysctl
// is still a write (audit logs, and some sysctls act on every write).
Status ensureSysctl(HostNetwork& host, const std::string& path, const std::string& want,
                    std::vector<std::string>* changes) {
  StatusOr<std::string> current = host.getSysctl(path);
  if (current.isOk() && trim(*current) == want) return Status::ok();
  // An unreadable value is written anyway, as kube-proxy does: the write
  // then reports the error that matters.
  const std::string before = current.isOk() ? trim(*current) : std::string("(unreadable)");
  Status s = host.setSysctl(path, want);
  if (!s.isOk()) {
    std::string context = "sysctl " + path + "=" + want;
    if (s.errnum() == ENOENT && path.starts_with("net/ipv4/vs/")) context += " (is the ip_vs module loaded?)";
    return s.withContext(context);
  }
  if (changes != nullptr) changes->push_back(path + ": " + before + " -> " + want);
  return Status::ok();
}

}  // namespace

Status prepareIpvsSysctls(HostNetwork& host, const std::string& kernelRelease, std::vector<std::string>* changes) {
  StatusOr<KernelVersion> version = parseKernelRelease(kernelRelease);
  if (!version.isOk()) return version.status();

  KIPVS_RETURN_IF_ERROR(ensureSysctl(host, "net/ipv4/vs/conntrack", "1", changes));
  switch (connReuseActionFor(*version)) {
    case ConnReuseAction::kUnsupported:
      LOG(WARNING) << "kernel " << kernelRelease << " is older than 4.1: no net/ipv4/vs/conn_reuse_mode to set";
      break;
    case ConnReuseAction::kSetZero:
      KIPVS_RETURN_IF_ERROR(ensureSysctl(host, "net/ipv4/vs/conn_reuse_mode", "0", changes));
      break;
    case ConnReuseAction::kLeave:
      VLOG(1) << "kernel " << kernelRelease << " >= 5.9: net/ipv4/vs/conn_reuse_mode left as it is";
      break;
  }
  KIPVS_RETURN_IF_ERROR(ensureSysctl(host, "net/ipv4/vs/expire_nodest_conn", "1", changes));
  KIPVS_RETURN_IF_ERROR(ensureSysctl(host, "net/ipv4/vs/expire_quiescent_template", "1", changes));
  KIPVS_RETURN_IF_ERROR(ensureSysctl(host, "net/ipv4/ip_forward", "1", changes));
  return Status::ok();
}

}  // namespace kipvs::controller
