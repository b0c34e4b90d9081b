#include "ipvs/proc_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace kipvs::ipvs {

namespace {

// The listing's lines (net/netfilter/ipvs/ip_vs_ctl.c, ip_vs_info_seq_show):
//   IP Virtual Server version 1.2.1 (size=4096)
//   Prot LocalAddress:Port Scheduler Flags
//     -> RemoteAddress:Port Forward Weight ActiveConn InActConn
//   TCP  0A000001:0050 rr persistent 10800 FFFFFFFF
//     -> AC100001:1F90      Masq    1      0          0
//   UDP  [fd00:0000:0000:0000:0000:0000:0000:0001]:0035 rr
//     -> [fd00:0001:0000:0000:0000:0000:0000:0001]:0035      Route   1      0          0
//   FWM  00000005 wrr
constexpr std::string_view kHeader = "IP Virtual Server version ";
constexpr std::string_view kDestPrefix = "  -> ";

// Splits off the next space-separated token.
std::string_view token(std::string_view& s) {
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    s = {};
    return {};
  }
  s.remove_prefix(b);
  const size_t e = std::min(s.find(' '), s.size());
  std::string_view t = s.substr(0, e);
  s.remove_prefix(e);
  return t;
}

template <typename T>
bool hexValue(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

template <typename T>
bool decValue(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 10);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// "0A000001:0050" or "[fd00:...:0001]:0050": the address as printed
// (IPv4 as 8 hex digits in host order, IPv6 in full), the port as 4 hex digits.
bool addressPort(std::string_view s, Address& addr, uint16_t& port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || !hexValue(s.substr(colon + 1), port)) return false;
  std::string_view a = s.substr(0, colon);
  if (a.size() >= 2 && a.front() == '[' && a.back() == ']') {
    auto p = Address::parse(a.substr(1, a.size() - 2));
    if (!p || p->isV4()) return false;
    addr = *p;
    return true;
  }
  uint32_t v4 = 0;
  if (a.size() != 8 || !hexValue(a, v4)) return false;
  addr = Address::v4(v4);
  return true;
}

}  // namespace

ProcDestsReader::ProcDestsReader(Table& table) {
  services_.reserve(table.services.size());
  for (auto& [key, state] : table.services) services_.emplace_back(&key, &state);
  seen_.assign(services_.size(), Seen::kNo);
}

Status ProcDestsReader::feed(std::string_view chunk) {
  while (error_.isOk() && !chunk.empty()) {
    const size_t nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(chunk);
      break;
    }
    if (partial_.empty()) {
      error_ = line(chunk.substr(0, nl));
    } else {
      partial_.append(chunk.substr(0, nl));
      error_ = line(partial_);
      partial_.clear();
    }
    chunk.remove_prefix(nl + 1);
  }
  return error_;
}

void ProcDestsReader::stopEarly() {
  if (current_ != SIZE_MAX) seen_[current_] = Seen::kUnsure;
  current_ = SIZE_MAX;
  partial_.clear();
}

StatusOr<std::vector<ServiceRef>> ProcDestsReader::finish() {
  if (error_.isOk() && !partial_.empty()) {
    error_ = line(partial_);  // the kernel ends every line with '\n'; be lenient
    partial_.clear();
  }
  if (error_.isOk() && lineNo_ == 0) error_ = Status::error(Code::kParse, "/proc/net/ip_vs is empty");
  if (!error_.isOk()) return error_;
  std::vector<ServiceRef> rest;
  for (size_t i = 0; i < services_.size(); ++i) {
    if (seen_[i] == Seen::kFilled) {
      ++filled_;
      continue;
    }
    services_[i].second->dests.clear();  // an unsure service's dests are read again
    rest.push_back(services_[i]);
  }
  return rest;
}

Status ProcDestsReader::line(std::string_view l) {
  ++lineNo_;
  if (lineNo_ == 1) {
    if (l.substr(0, kHeader.size()) != kHeader) {
      return Status::error(Code::kParse, "/proc/net/ip_vs: unexpected first line \"" + std::string(l) + "\"");
    }
    return Status::ok();
  }
  if (lineNo_ <= 3) return Status::ok();  // the column headings
  Status s = l.substr(0, kDestPrefix.size()) == kDestPrefix ? destLine(l.substr(kDestPrefix.size())) : serviceLine(l);
  if (!s.isOk()) {
    return Status::error(Code::kParse, "/proc/net/ip_vs line " + std::to_string(lineNo_) + ": " + s.message() +
                                           ": \"" + std::string(l) + "\"");
  }
  return s;
}

Status ProcDestsReader::serviceLine(std::string_view l) {
  current_ = SIZE_MAX;
  const std::string_view proto = token(l);
  if (proto == "FWM") return Status::ok();  // no family shown: read over netlink
  auto p = parseProtocol(proto);
  if (!p) return Status::ok();  // a protocol kipvs has no name for: netlink reads it if it knows it
  Address addr;
  uint16_t port = 0;
  if (!addressPort(token(l), addr, port)) return Status::error(Code::kParse, "bad service address");
  const ServiceKey key = ServiceKey::make(*p, addr, port);
  auto it = std::lower_bound(services_.begin(), services_.end(), key,
                             [](const ServiceRef& r, const ServiceKey& k) { return *r.first < k; });
  if (it == services_.end() || *it->first != key) return Status::ok();  // not in the service dump
  current_ = static_cast<size_t>(it - services_.begin());
  // Listed twice (the table changed between two reads of the file): the later listing wins.
  if (seen_[current_] != Seen::kNo) it->second->dests.clear();
  seen_[current_] = Seen::kFilled;
  return Status::ok();
}

Status ProcDestsReader::destLine(std::string_view l) {
  Address addr;
  uint16_t port = 0;
  if (!addressPort(token(l), addr, port)) return Status::error(Code::kParse, "bad real server address");
  const std::string_view fwd = token(l);
  DestState d;
  if (!decValue(token(l), d.spec.weight) || !decValue(token(l), d.counters.activeConns) ||
      !decValue(token(l), d.counters.inactiveConns)) {
    return Status::error(Code::kParse, "bad weight or connection counts");
  }
  if (current_ == SIZE_MAX) return Status::ok();
  if (fwd == "Masq") {
    d.spec.fwd = FwdMethod::kMasq;  // also how a bypass dest prints: the kernel names it no other way
  } else if (fwd == "Route") {
    d.spec.fwd = FwdMethod::kRoute;
  } else if (fwd == "Local") {
    d.spec.fwd = FwdMethod::kLocal;
  } else {
    seen_[current_] = Seen::kUnsure;  // Tunnel (settings not shown), or a method this reader does not know
    return Status::ok();
  }
  putReadDest(services_[current_].second->dests, DestKey{addr, port}, d);
  return Status::ok();
}

StatusOr<ProcIpvsFile> ProcIpvsFile::open(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(Code::kIo, std::string("opening ") + path + ": " + std::strerror(errno), errno);
  return ProcIpvsFile(fd);
}

ProcIpvsFile& ProcIpvsFile::operator=(ProcIpvsFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

ProcIpvsFile::~ProcIpvsFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status ProcIpvsFile::readInto(ProcDestsReader& reader, size_t maxReads, size_t* reads) {
  *reads = 0;
  if (::lseek(fd_, 0, SEEK_SET) < 0) {
    return Status::error(Code::kIo, std::string("/proc/net/ip_vs: lseek: ") + std::strerror(errno), errno);
  }
  // The kernel hands out about a page per read() whatever the buffer (more
  // only for a service whose listing is longer).
  std::string buf(64 * 1024, '\0');
  for (;;) {
    if (*reads == maxReads) {
      reader.stopEarly();
      return Status::ok();
    }
    ++*reads;
    const ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::error(Code::kIo, std::string("/proc/net/ip_vs: read: ") + std::strerror(errno), errno);
    }
    if (n == 0) return Status::ok();
    KIPVS_RETURN_IF_ERROR(reader.feed(std::string_view(buf.data(), static_cast<size_t>(n))));
  }
}

}  // namespace kipvs::ipvs
