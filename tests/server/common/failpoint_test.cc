#include "server/common/failpoint.h"

#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::HasSubstr;

class FailpointTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_THAT(ConfigureFailpoints("", 1), IsOk()); }
};

TEST_F(FailpointTest, UnarmedPointsNeverFire) {
  ASSERT_THAT(ConfigureFailpoints("", 1), IsOk());
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(FailpointFires(kFailpointBeforeSync));
}

TEST_F(FailpointTest, NthHitFiresOnceExactlyThere) {
  ASSERT_THAT(ConfigureFailpoints("store.before_sync=crash#3", 1), IsOk());
  std::vector<bool> fired;
  for (int i = 0; i < 5; ++i) fired.push_back(FailpointFires(kFailpointBeforeSync));
  EXPECT_THAT(fired, ::testing::ElementsAre(false, false, true, false, false));
  EXPECT_FALSE(FailpointFires(kFailpointAfterSyncBeforeReply));
}

TEST_F(FailpointTest, ProbabilityIsSeededAndRoughlyRight) {
  auto run = [] {
    std::vector<bool> fired;
    for (int i = 0; i < 2000; ++i) fired.push_back(FailpointFires(kFailpointBeforeSendAssignment));
    return fired;
  };
  ASSERT_THAT(ConfigureFailpoints("scheduler.before_send_assignment=crash@0.25", 7), IsOk());
  std::vector<bool> first = run();
  ASSERT_THAT(ConfigureFailpoints("scheduler.before_send_assignment=crash@0.25", 7), IsOk());
  EXPECT_EQ(run(), first);
  const auto count = std::count(first.begin(), first.end(), true);
  EXPECT_GT(count, 400);
  EXPECT_LT(count, 600);
}

TEST_F(FailpointTest, BadSpecsAreRefusedAndKeepThePreviousConfiguration) {
  ASSERT_THAT(ConfigureFailpoints("store.before_sync=crash#2", 1), IsOk());
  EXPECT_THAT(ConfigureFailpoints("store.befor_sync=crash", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("store.befor_sync: unknown")));
  EXPECT_THAT(ConfigureFailpoints("store.before_sync=explode", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown action")));
  EXPECT_THAT(ConfigureFailpoints("store.before_sync=crash@1.5", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("probability")));
  EXPECT_THAT(ConfigureFailpoints("store.before_sync=crash#0", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("N must be >= 1")));
  EXPECT_FALSE(FailpointFires(kFailpointBeforeSync));
  EXPECT_TRUE(FailpointFires(kFailpointBeforeSync));  // still crash#2 from before
}

TEST_F(FailpointTest, OffDisarms) {
  ASSERT_THAT(ConfigureFailpoints("store.before_sync=crash,store.before_sync=off", 1), IsOk());
  EXPECT_FALSE(FailpointFires(kFailpointBeforeSync));
}

TEST(FailpointDeathTest, CrashKillsTheProcessWithSigkill) {
  EXPECT_EXIT(
      {
        (void)ConfigureFailpoints("store.after_sync_before_reply=crash", 1);
        MaybeCrashAt(kFailpointAfterSyncBeforeReply);
      },
      ::testing::KilledBySignal(SIGKILL), "failpoint store.after_sync_before_reply: crash");
}

}  // namespace
}  // namespace sched
