// ip_vs unloaded and loaded again under an open client: the generic netlink
// family comes back under a new id, and the kernel answers requests for the
// old one with ENOENT, the errno IPVS uses for "no such destination". Run
// last and only in the VM (scripts/kernel-tests.sh): it removes every IPVS
// module, then loads back the ones it removed.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ipvs/netlink_client.h"
#include "test/kernel/netns.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

Address A(const char* s) { return *Address::parse(s); }

// Module -> the modules using it, from /proc/modules.
std::map<std::string, std::vector<std::string>> moduleUsers() {
  std::map<std::string, std::vector<std::string>> out;
  std::ifstream in("/proc/modules");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string name, size, refs, users;
    f >> name >> size >> refs >> users;
    auto& u = out[name];
    std::istringstream us(users);
    for (std::string m; std::getline(us, m, ',');) {
      if (!m.empty() && m != "-") u.push_back(m);
    }
  }
  return out;
}

// Unloads `name` after everything that uses it; appends what it unloaded.
void unload(const std::string& name, std::vector<std::string>& removed) {
  const std::vector<std::string> users = moduleUsers()[name];
  for (const std::string& user : users) unload(user, removed);
  // A namespace deleted by an earlier case keeps its services (and their
  // scheduler modules) until a kworker tears it down.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int rc = 0;
  std::string out;
  do {
    out = kerneltest::run("rmmod " + name + " 2>&1", &rc);
    if (rc == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  REQUIRE_MESSAGE(rc == 0, "rmmod " << name << ": " << out);
  removed.push_back(name);
}

}  // namespace

TEST_CASE("kernel (reloads ip_vs, VM only): a batch for the family's old id is not applied, and the next one is") {
  kerneltest::enterFreshNetns();
  auto c = NetlinkIpvsClient::create();
  REQUIRE_MESSAGE(c.isOk(), c.status().toString());
  NetlinkIpvsClient& old = **c;

  std::vector<std::string> removed;
  unload("ip_vs", removed);
  kerneltest::run("modprobe ip_vs && modprobe ip_vs_rr");

  // Someone else programs the reloaded IPVS.
  auto other = NetlinkIpvsClient::create();
  REQUIRE_MESSAGE(other.isOk(), other.status().toString());
  const auto svc = ServiceKey::tcp(A("10.0.0.1"), 80);
  const DestKey dest{A("172.16.0.1"), 80};
  ServiceSpec rr;
  rr.netmask = 0xffffffffu;
  REQUIRE((*other)->addService(svc, rr).isOk());
  REQUIRE((*other)->addDest(svc, dest, DestSpec{}).isOk());

  // The old client's first batch goes to the old id: every op of it gets
  // ENOENT from genetlink, which must not read as "no such destination".
  const std::vector<Op> ops = {Op::deleteDest(svc, dest)};
  std::vector<Status> first = old.apply(ops);
  REQUIRE(first.size() == 1);
  CAPTURE(first[0].toString());
  CHECK(first[0].code() == Code::kIo);
  CHECK(first[0].errnum() == ESTALE);
  CHECK(first[0].message().find("registered again") != std::string::npos);
  auto t = (*other)->dumpTable();
  REQUIRE(t.isOk());
  REQUIRE(t->services.count(svc) == 1);
  CHECK(t->services.at(svc).dests.count(dest) == 1);  // not applied, and not said to be

  // The client has the new id now: the same batch is applied.
  std::vector<Status> second = old.apply(ops);
  REQUIRE(second.size() == 1);
  CHECK_MESSAGE(second[0].isOk(), second[0].toString());
  t = (*other)->dumpTable();
  REQUIRE(t.isOk());
  REQUIRE(t->services.count(svc) == 1);
  CHECK(t->services.at(svc).dests.empty());

  REQUIRE((*other)->flush().isOk());
  // Load back what was there (dependencies first, as removed in reverse).
  std::string all;
  for (auto it = removed.rbegin(); it != removed.rend(); ++it) all += " " + *it;
  kerneltest::run("modprobe -a" + all);
}
