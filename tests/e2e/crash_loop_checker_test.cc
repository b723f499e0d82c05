// The crash loop's checker on hand-made histories: a correct run passes, and each kind of
// broken run is named.
#include "tests/e2e/crash_loop_checker.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched::crash_loop {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

JobView View(std::string id, std::string rid, State state, uint32_t attempt, uint64_t epoch,
             int exit_code = 0) {
  JobView j;
  j.id = std::move(id);
  j.request_id = std::move(rid);
  j.state = state;
  j.attempt = attempt;
  j.epoch = epoch;
  j.exit_code = exit_code;
  return j;
}

// Two jobs submitted and run to the end, one cancelled; one unknown submit resolved.
class CheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uint64_t a = history_.Invoke(0, OpKind::kSubmit, "r1");
    history_.Ok(a, View("j1", "r1", State::kAssigned, 1, 1));
    uint64_t b = history_.Invoke(1, OpKind::kSubmit, "r2");
    history_.Ok(b, View("j2", "r2", State::kPending, 1, 0));
    uint64_t c = history_.Invoke(1, OpKind::kCancel, "j2");
    JobView cancelled = View("j2", "r2", State::kCancelled, 1, 0);
    cancelled.cancel_requested = true;
    history_.Ok(c, cancelled);
    uint64_t d = history_.Invoke(0, OpKind::kSubmit, "r3");
    history_.Unknown(d, 14, "connection refused");
    history_.Resolve(d, Resolution::kNotApplied);
    unknown_submit_ = d;

    in_.events = {View("j1", "r1", State::kPending, 1, 0),
                  View("j1", "r1", State::kAssigned, 1, 1),
                  View("j2", "r2", State::kPending, 1, 0),
                  View("j1", "r1", State::kRunning, 1, 1),
                  // a restart: lease lost, back to the queue, placed again
                  View("j1", "r1", State::kPending, 2, 1),
                  View("j1", "r1", State::kAssigned, 2, 3),
                  cancelled,
                  View("j1", "r1", State::kFailed, 2, 3, 2),
                  View("j1", "r1", State::kFailed, 2, 3, 2)};  // the snapshot after a restart
    in_.final_jobs = {View("j1", "r1", State::kFailed, 2, 3, 2), cancelled};
  }

  std::vector<std::string> Run() {
    in_.ops = history_.ops();
    return Check(in_);
  }

  History history_;
  CheckInput in_;
  uint64_t unknown_submit_ = 0;
};

TEST_F(CheckerTest, CorrectRunPasses) { EXPECT_THAT(Run(), IsEmpty()); }

TEST_F(CheckerTest, LostAcknowledgedSubmit) {
  in_.final_jobs.erase(in_.final_jobs.begin());
  in_.events.clear();
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("acknowledged submit r1 (job j1) lost")));
}

TEST_F(CheckerTest, AckAnsweredWithAnotherRequestsJob) {
  in_.final_jobs[0].request_id = "r9";
  EXPECT_THAT(Run(), ::testing::Contains(HasSubstr("answered job j1, which has request id r9")));
}

TEST_F(CheckerTest, TwoJobsForOneRequestId) {
  in_.final_jobs.push_back(View("j3", "r1", State::kSucceeded, 1, 4));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("request id r1 made two jobs: j1 and j3")));
}

TEST_F(CheckerTest, JobNobodySubmitted) {
  in_.final_jobs.push_back(View("j3", "zz", State::kSucceeded, 1, 4));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j3 has request id \"zz\" that no client sent")));
}

TEST_F(CheckerTest, StateGoingBackwards) {
  // RUNNING, then ASSIGNED of the same assignment.
  in_.events.insert(in_.events.begin() + 4, View("j1", "r1", State::kAssigned, 1, 1));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr(
                         "job j1 went backwards between events: RUNNING attempt 1 epoch 1 then "
                         "ASSIGNED attempt 1 epoch 1")));
}

TEST_F(CheckerTest, EndedJobComingBackToLife) {
  in_.events.push_back(View("j1", "r1", State::kPending, 3, 3));
  EXPECT_THAT(Run(), ::testing::Contains(HasSubstr("job j1 went backwards between events: FAILED")));
}

TEST_F(CheckerTest, FinalStateBehindTheEvents) {
  in_.final_jobs[0] = View("j1", "r1", State::kRunning, 2, 3);
  in_.require_all_terminal = false;
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j1 went backwards at the end: FAILED")));
}

TEST_F(CheckerTest, TwoTerminalOutcomes) {
  in_.events.push_back(View("j1", "r1", State::kSucceeded, 2, 3, 0));
  EXPECT_THAT(Run(), ::testing::Contains(HasSubstr(
                         "job j1 has two terminal outcomes between events: FAILED attempt 2 "
                         "epoch 3 exit 2 and SUCCEEDED attempt 2 epoch 3 exit 0")));
}

TEST_F(CheckerTest, TerminalExitCodeChanging) {
  in_.final_jobs[0].exit_code = 1;
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j1 has two terminal outcomes at the end")));
}

TEST_F(CheckerTest, EpochDecreasing) {
  // A new attempt under an older epoch: progress by attempt, but the fence went back.
  in_.events.insert(in_.events.begin() + 6, View("j1", "r1", State::kAssigned, 3, 2));
  EXPECT_THAT(Run(), ::testing::Contains(
                         HasSubstr("job j1 epoch decreased between events: 3 then 2")));
  in_.events.erase(in_.events.begin() + 6);
  in_.events.insert(in_.events.begin() + 5, View("j1", "r1", State::kAssigned, 2, 0));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j1 went backwards between events"),
                                 HasSubstr("job j1 epoch decreased between events: 1 then 0")));
}

TEST_F(CheckerTest, EpochGivenToTwoJobs) {
  uint64_t op = history_.Invoke(2, OpKind::kSubmit, "r4");
  history_.Ok(op, View("j4", "r4", State::kPending, 1, 0));
  in_.final_jobs.push_back(View("j4", "r4", State::kSucceeded, 1, 3));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("epoch 3 was given to two jobs: j1 and j4")));
}

TEST_F(CheckerTest, UnresolvedUnknown) {
  uint64_t op = history_.Invoke(3, OpKind::kCancel, "j1");
  history_.Unknown(op, 4, "deadline exceeded");
  EXPECT_THAT(Run(), ElementsAre(HasSubstr(
                         "cancel j1 (op 5) had an unknown outcome that was never resolved")));
  history_.Resolve(op, Resolution::kNotApplied);
  EXPECT_THAT(Run(), IsEmpty());
}

TEST_F(CheckerTest, CallNeverCompleted) {
  history_.Invoke(3, OpKind::kSubmit, "r5");
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("submit r5 (op 5) never completed")));
}

TEST_F(CheckerTest, AcknowledgedCancelNotEndingCancelled) {
  uint64_t op = history_.Invoke(3, OpKind::kCancel, "j1");
  history_.Ok(op, View("j1", "r1", State::kRunning, 2, 3));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("acknowledged cancel of job j1 (op 5) ended FAILED")));
}

TEST_F(CheckerTest, CancelRequestedButNotCancelled) {
  in_.final_jobs[0].cancel_requested = true;
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j1 had a cancel acknowledged but ended FAILED")));
}

TEST_F(CheckerTest, CancelOfAcknowledgedJobNotFound) {
  uint64_t op = history_.Invoke(3, OpKind::kCancel, "j1");
  history_.Fail(op, 5, "job j1 not found");
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("cancel of acknowledged job j1 got NOT_FOUND")));
}

TEST_F(CheckerTest, EventOfAJobThatVanished) {
  in_.events.push_back(View("j7", "r7", State::kPending, 1, 0));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j7 was seen in an event (PENDING attempt 1 "
                                           "epoch 0) but is gone at the end")));
}

TEST_F(CheckerTest, SucceededWithNonZeroExit) {
  in_.final_jobs[0] = View("j1", "r1", State::kSucceeded, 2, 3, 3);
  in_.events.pop_back();
  in_.events.pop_back();
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j1 SUCCEEDED with exit code 3")));
}

TEST_F(CheckerTest, JobThatNeverEnded) {
  in_.final_jobs.push_back(View("j5", "r3", State::kRunning, 1, 7));
  EXPECT_THAT(Run(), ElementsAre(HasSubstr("job j5 never ended: RUNNING attempt 1 epoch 7")));
  in_.require_all_terminal = false;
  EXPECT_THAT(Run(), IsEmpty());
}

TEST(HistoryTest, WritesOneJsonLinePerStep) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "crash_loop_history_test.jsonl").string();
  std::filesystem::remove(path);
  {
    History h(path);
    uint64_t op = h.Invoke(2, OpKind::kSubmit, "say \"hi\"");
    h.Unknown(op, 14, "down");
    h.Resolve(op, Resolution::kApplied);
    EXPECT_EQ(h.ops().at(0).resolution, Resolution::kApplied);
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_THAT(lines, ElementsAre(HasSubstr("\"event\":\"invoke\",\"op\":1,\"worker\":2,"
                                           "\"kind\":\"submit\",\"key\":\"say \\\"hi\\\"\""),
                                 HasSubstr("\"outcome\":\"unknown\""),
                                 HasSubstr("\"resolution\":\"applied\"")));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace sched::crash_loop
