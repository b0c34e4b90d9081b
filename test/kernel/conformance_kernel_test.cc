// The conformance suite against the real kernel: a fresh network namespace per case.
#include "test/ipvs/conformance_cases.h"
#include "test/kernel/netns.h"

namespace {

struct KernelEnv {
  static constexpr bool kReal = true;
  std::unique_ptr<kipvs::ipvs::IpvsClient> client;
  KernelEnv() {
    kipvs::kerneltest::enterFreshNetns();
    client = kipvs::kerneltest::openClient();
    // A fresh namespace has an empty table: cases cannot see each other's.
    auto t = client->dumpTable();
    REQUIRE_MESSAGE(t.isOk(), t.status().toString());
    REQUIRE(t->services.empty());
  }
};

}  // namespace

TEST_CASE_TEMPLATE_INVOKE(conformance_suite, KernelEnv);
