#pragma once

#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace sched::testing {

// A folder of the running test's own under the test temp dir: for what an in-process schedd
// keeps beside its store (checkpoint chunks), so that tests neither share it nor write into the
// folder they run in.
inline std::string TestDataDir() {
  return ::testing::TempDir() + "sched_" +
         ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
         std::to_string(getpid());
}

}  // namespace sched::testing
