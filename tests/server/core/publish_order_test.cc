// The job feed (SubscribeJobs, behind WatchJobs) must show a job's changes in the order they were
// made, even when the callbacks of consecutive batches run on different threads: the store's
// writer may still be running the callbacks of batch N when a caller finds batch N+1 already
// durable and runs its own inline.
#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler.h"
#include "server/store/memory_store.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::IsOk;
using ::testing::ElementsAre;

// Durable at once, like MemoryStore; while `hold` is set, callbacks are kept instead of run, as
// if the writer thread had been preempted between marking a batch durable and calling back.
class HoldingStore final : public Store {
 public:
  absl::StatusOr<LoadedState> Load() override { return inner_.Load(); }
  uint64_t Append(StoreBatch batch) override { return inner_.Append(std::move(batch)); }
  void WhenDurable(uint64_t ticket, absl::AnyInvocable<void(absl::Status)> done) override {
    if (hold) {
      held_.push_back(std::move(done));
    } else {
      inner_.WhenDurable(ticket, std::move(done));
    }
  }
  absl::StatusOr<uint64_t> AppendLog(const std::string& job_id, LogRecord record) override {
    return inner_.AppendLog(job_id, std::move(record));
  }
  absl::StatusOr<std::vector<LogRecord>> ReadLogs(const std::string& job_id, uint64_t from,
                                                  size_t max) override {
    return inner_.ReadLogs(job_id, from, max);
  }
  void Release() {
    std::vector<absl::AnyInvocable<void(absl::Status)>> held = std::move(held_);
    held_.clear();
    for (auto& done : held) done(absl::OkStatus());
  }

  bool hold = false;

 private:
  MemoryStore inner_;
  std::vector<absl::AnyInvocable<void(absl::Status)>> held_;
};

TEST(PublishOrderTest, ChangesReachSubscribersInTheOrderTheyWereMade) {
  HoldingStore store;
  FakeClock clock;
  SchedulerOptions options;
  options.seed = 1;
  auto scheduler = Scheduler::Create(options, &store, &clock);
  ASSERT_THAT(scheduler, IsOk());
  std::vector<JobState> seen;
  (*scheduler)->SubscribeJobs([&seen](const Job& job) { seen.push_back(job.state); });

  JobSpec spec;
  spec.name = "a";
  spec.run = "true";
  store.hold = true;
  std::optional<std::string> id;
  (*scheduler)->Submit(spec, "", [&id](absl::StatusOr<SubmitResult> r) {
    ASSERT_THAT(r, IsOk());
    id = r->job.id;
  });
  // The submit is durable but its callback has not run; a second change to the job is made,
  // found durable, and called back on this thread first.
  store.hold = false;
  JobQuery query;
  const std::string job_id = (*scheduler)->ListJobs(query).jobs.at(0).id;
  bool cancelled = false;
  (*scheduler)->Cancel(job_id, "", [&cancelled](absl::StatusOr<Job> j) {
    ASSERT_THAT(j, IsOk());
    cancelled = true;
  });
  EXPECT_TRUE(cancelled);
  EXPECT_THAT(seen, ElementsAre());  // the cancel waits for the submit's event
  store.Release();
  EXPECT_EQ(id, job_id);
  EXPECT_THAT(seen, ElementsAre(JobState::kPending, JobState::kCancelled));
}

}  // namespace
}  // namespace sched
