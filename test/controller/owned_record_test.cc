// The record of virtual servers kipvs made on the node's own addresses
// (controller/owned_record.h): its text form and its file.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "controller/owned_record.h"

namespace kipvs::controller {
namespace {

using ipvs::Address;
using ipvs::Protocol;
using ipvs::ServiceKey;

Address A(const char* s) { return *Address::parse(s); }

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  std::string path;
  TempDir() {
    char dir[] = "/tmp/kipvs-record-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    path = dir;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

TEST_CASE("owned record: keys read back as ServiceKey::toString writes them") {
  for (const ServiceKey& k : {ServiceKey::tcp(A("192.168.1.10"), 80), ServiceKey::make(Protocol::kUdp, A("10.0.0.1"), 53),
                              ServiceKey::make(Protocol::kSctp, A("fd00::1"), 65535), ServiceKey::tcp(A("::ffff:1.2.3.4"), 1)}) {
    CAPTURE(k.toString());
    StatusOr<ServiceKey> back = parseServiceKey(k.toString());
    REQUIRE_MESSAGE(back.isOk(), back.status().toString());
    CHECK(*back == k);
  }
  for (const char* bad : {"", "TCP", "tcp 10.0.0.1:80", "ICMP 10.0.0.1:80", "TCP 10.0.0.1", "TCP 10.0.0.1:0",
                          "TCP 10.0.0.1:65536", "TCP 10.0.0.1:8x", "TCP fd00::1:80", "TCP [10.0.0.1]:80", "TCP 10.0.0.256:80",
                          "FWM 5 IPv4", "TCP 10.0.0.1:080000"}) {
    CAPTURE(bad);
    StatusOr<ServiceKey> k = parseServiceKey(bad);
    CHECK_FALSE(k.isOk());
    if (!k.isOk()) CHECK(k.status().code() == Code::kParse);
  }
}

TEST_CASE("owned record: the text round-trips; comments and blank lines are skipped; a bad line is named") {
  const std::set<ServiceKey> keys{ServiceKey::tcp(A("192.168.1.10"), 80), ServiceKey::make(Protocol::kUdp, A("fd00::5"), 53)};
  const std::string text = formatOwnedRecord(keys);
  CHECK(text.find("TCP 192.168.1.10:80\nUDP [fd00::5]:53\n") != std::string::npos);
  StatusOr<std::set<ServiceKey>> back = parseOwnedRecord(text);
  REQUIRE(back.isOk());
  CHECK(*back == keys);
  CHECK(parseOwnedRecord("")->empty());
  CHECK(parseOwnedRecord("# only\n\n")->empty());
  StatusOr<std::set<ServiceKey>> bad = parseOwnedRecord("# c\nTCP 1.2.3.4:80\nTCP 1.2.3.4\n");
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().message().find("line 3: \"TCP 1.2.3.4\"") == 0);
}

TEST_CASE("owned record: the file is per network namespace, missing means empty, and a write replaces it whole") {
  TempDir dir;
  StatusOr<std::string> id = netnsIdentity();
  REQUIRE_MESSAGE(id.isOk(), id.status().toString());
  CHECK((id->rfind("cookie-", 0) == 0 || id->rfind("ino-", 0) == 0));
  StatusOr<std::string> path = ownedRecordPath(dir.path + "/state");
  REQUIRE(path.isOk());
  CHECK(*path == dir.path + "/state/owned-netns-" + *id);

  StatusOr<std::set<ServiceKey>> none = readOwnedRecord(*path);
  REQUIRE_MESSAGE(none.isOk(), none.status().toString());
  CHECK(none->empty());

  const std::set<ServiceKey> two{ServiceKey::tcp(A("192.168.1.10"), 80), ServiceKey::tcp(A("192.168.1.10"), 443)};
  REQUIRE(writeOwnedRecord(*path, two).isOk());  // creates state/
  CHECK(*readOwnedRecord(*path) == two);
  const std::set<ServiceKey> one{ServiceKey::tcp(A("192.168.1.10"), 443)};
  REQUIRE(writeOwnedRecord(*path, one).isOk());
  CHECK(*readOwnedRecord(*path) == one);
  CHECK(slurp(*path) == formatOwnedRecord(one));
  struct stat st;
  CHECK(::stat((*path + ".tmp-" + std::to_string(::getpid())).c_str(), &st) != 0);  // no temporary left

  // A damaged file is an error naming it, not an empty record.
  { std::ofstream(*path) << "TCP 192.168.1.10:80\ngarbage\n"; }
  StatusOr<std::set<ServiceKey>> damaged = readOwnedRecord(*path);
  REQUIRE_FALSE(damaged.isOk());
  CHECK(damaged.status().message().find(*path) != std::string::npos);
  CHECK(damaged.status().message().find("line 2") != std::string::npos);

  // Where the directory cannot be made: an error with errno.
  Status s = writeOwnedRecord("/proc/kipvs-no/owned", one);
  CHECK_FALSE(s.isOk());
  CHECK(s.errnum() != 0);
}

TEST_CASE("owned record: the temporary file is made afresh, never opened through a link or over another file") {
  // In a --state-dir others can write to, whoever planted a link at the
  // temporary's name must not get kipvs (root) to write through it, and a
  // stale temporary of a crashed run with the same pid is replaced.
  TempDir dir;
  const std::string path = dir.path + "/owned";
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const std::string victim = dir.path + "/victim";
  { std::ofstream(victim) << "precious\n"; }
  REQUIRE(::symlink(victim.c_str(), tmp.c_str()) == 0);
  const std::set<ServiceKey> one{ServiceKey::tcp(A("192.168.1.10"), 443)};
  Status s = writeOwnedRecord(path, one);
  REQUIRE_MESSAGE(s.isOk(), s.toString());
  CHECK(slurp(victim) == "precious\n");
  CHECK(*readOwnedRecord(path) == one);
  struct stat st;
  CHECK(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(::lstat(tmp.c_str(), &st) != 0);

  { std::ofstream(tmp) << "stale\n"; }  // a hard-linked or leftover file: replaced, not rewritten in place
  REQUIRE(::link(tmp.c_str(), (dir.path + "/other-name").c_str()) == 0);
  REQUIRE(writeOwnedRecord(path, {}).isOk());
  CHECK(slurp(dir.path + "/other-name") == "stale\n");
  CHECK(readOwnedRecord(path)->empty());
}

TEST_CASE("owned record: another network namespace has another file") {
  TempDir dir;
  const std::string here = *ownedRecordPath(dir.path);
  // A child in a new network namespace (needs CAP_SYS_ADMIN: the tests run as root).
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string there = "unshare failed";
    if (::unshare(CLONE_NEWNET) == 0) {
      StatusOr<std::string> p = ownedRecordPath(dir.path);
      there = p.isOk() ? *p : p.status().toString();
    }
    (void)!::write(fds[1], there.data(), there.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string there;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) there.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE_MESSAGE(there.rfind(dir.path + "/owned-netns-", 0) == 0, there);
  CHECK(there != here);
}

}  // namespace
}  // namespace kipvs::controller
