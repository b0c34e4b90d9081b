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
  }
};

}  // namespace

TEST_CASE_TEMPLATE_INVOKE(conformance_suite, KernelEnv);
