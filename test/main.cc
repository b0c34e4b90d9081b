// One doctest main for the unit-test binary; glog quiet unless asked.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <glog/logging.h>

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 2;  // tests assert on values, not on log lines
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
