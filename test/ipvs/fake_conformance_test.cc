// The conformance suite against the in-memory fake kernel.
#include "ipvs/fake_client.h"
#include "test/ipvs/conformance_cases.h"

namespace {

struct FakeEnv {
  static constexpr bool kReal = false;
  std::unique_ptr<kipvs::ipvs::IpvsClient> client = std::make_unique<kipvs::ipvs::FakeIpvsClient>();
  FakeEnv() {
    // Every case starts from an empty table with no writes made.
    REQUIRE(client->dumpTable()->services.empty());
    REQUIRE(client->writeCount() == 0);
  }
};

}  // namespace

TEST_CASE_TEMPLATE_INVOKE(conformance_suite, FakeEnv);
