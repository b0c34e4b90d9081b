#include "controller/owned_record.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "controller/host.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14; glibc 2.36's headers lack it
#endif

namespace kipvs::controller {

using ipvs::ServiceKey;

StatusOr<ServiceKey> parseServiceKey(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status::error(Code::kParse, "\"" + std::string(text) + "\": " + why);
  };
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) return bad("expected PROTOCOL ADDRESS:PORT");
  const std::string_view proto = text.substr(0, space);
  ipvs::Protocol p;
  if (proto == "TCP") {
    p = ipvs::Protocol::kTcp;
  } else if (proto == "UDP") {
    p = ipvs::Protocol::kUdp;
  } else if (proto == "SCTP") {
    p = ipvs::Protocol::kSctp;
  } else {
    return bad("protocol is not TCP, UDP or SCTP");
  }
  const std::string_view hostPort = text.substr(space + 1);
  const size_t colon = hostPort.rfind(':');
  if (colon == std::string_view::npos) return bad("expected ADDRESS:PORT");
  std::string_view host = hostPort.substr(0, colon);
  const std::string_view port = hostPort.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string_view::npos) return bad("brackets around an IPv4 address");
  } else if (host.find(':') != std::string_view::npos) {
    return bad("an IPv6 address needs brackets");
  }
  StatusOr<ipvs::Address> addr = ipvs::Address::parse(host);
  if (!addr) return bad(addr.status().message());
  uint32_t n = 0;
  if (port.empty() || port.size() > 5) return bad("bad port");
  for (char c : port) {
    if (c < '0' || c > '9') return bad("bad port");
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n == 0 || n > 65535) return bad("port out of range");
  return ServiceKey::make(p, *addr, static_cast<uint16_t>(n));
}

std::string formatOwnedRecord(const std::set<ServiceKey>& keys) {
  std::string out =
      "# kipvs: the virtual servers it made on this node's own addresses for an externalIP or a\n"
      "# LoadBalancer IP naming the node (route mode). It deletes one once no Service wants it.\n";
  for (const auto& k : keys) out += k.toString() + "\n";
  return out;
}

StatusOr<std::set<ServiceKey>> parseOwnedRecord(std::string_view text) {
  std::set<ServiceKey> keys;
  int lineNo = 0;
  while (!text.empty()) {
    ++lineNo;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    StatusOr<ServiceKey> k = parseServiceKey(line);
    if (!k) return k.status().withContext("line " + std::to_string(lineNo));
    keys.insert(*k);
  }
  return keys;
}

StatusOr<std::string> netnsIdentity() {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::error(Code::kIo, "socket", errno);
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  const int rc = ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  const int e = errno;
  ::close(fd);
  if (rc == 0 && len == sizeof cookie) return "cookie-" + std::to_string(cookie);
  if (e != ENOPROTOOPT) return Status::error(Code::kIo, "reading the network namespace's cookie", e);
  // Before 5.14: the namespace's inode, unique among namespaces that exist.
  struct stat st;
  if (::stat("/proc/self/ns/net", &st) != 0) return Status::error(Code::kIo, "stat /proc/self/ns/net", errno);
  return "ino-" + std::to_string(st.st_ino);
}

StatusOr<std::string> ownedRecordPath(const std::string& dir) {
  StatusOr<std::string> id = netnsIdentity();
  if (!id) return id.status();
  return dir + "/owned-netns-" + *id;
}

StatusOr<std::set<ServiceKey>> readOwnedRecord(const std::string& path) {
  StatusOr<std::string> text = readWholeFile(path);
  if (!text.isOk()) {
    if (text.status().errnum() == ENOENT) return std::set<ServiceKey>{};
    return text.status();
  }
  StatusOr<std::set<ServiceKey>> keys = parseOwnedRecord(*text);
  if (!keys) return keys.status().withContext(path);
  return keys;
}

Status writeOwnedRecord(const std::string& path, const std::set<ServiceKey>& keys) {
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::error(Code::kIo, "cannot create " + dir, errno);
    }
  }
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  // A fresh file, never one that is there (a leftover of a crashed run with
  // this pid, or a link someone planted where --state-dir is writable by
  // others): unlink removes the name only, and O_EXCL|O_NOFOLLOW refuses
  // whatever appears at it meanwhile.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return Status::error(Code::kIo, "cannot remove " + tmp, errno);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return Status::error(Code::kIo, "cannot create " + tmp, errno);
  const std::string text = formatOwnedRecord(keys);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::error(Code::kIo, "cannot write " + tmp, e);
    }
    done += static_cast<size_t>(n);
  }
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  const int closed = ::close(fd) == 0 ? 0 : errno;
  if (synced || closed) {
    ::unlink(tmp.c_str());
    return Status::error(Code::kIo, "cannot write " + tmp, synced ? synced : closed);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return Status::error(Code::kIo, "cannot rename " + tmp + " to " + path, e);
  }
  return Status::ok();
}

}  // namespace kipvs::controller
