// Small pieces of the agent: reconnect backoff, how a job's end is reported, metrics, NVML
// without a driver.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/backoff.h"
#include "agent/job_end.h"
#include "agent/metrics.h"
#include "agent/nvml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/agent/test_util.h"
#include "tests/testing/status_matchers.h"

namespace sched::agent {
namespace {

using ::sched::agent::testing::MetricValue;
using ::sched::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Backoff, DoublesWithJitterUpToMax) {
  Backoff backoff(absl::Milliseconds(100), absl::Seconds(5), /*seed=*/42);
  absl::Duration ceiling = absl::Milliseconds(100);
  for (int i = 0; i < 10; ++i) {
    const absl::Duration d = backoff.Next();
    EXPECT_GE(d, ceiling / 2) << i;
    EXPECT_LE(d, ceiling) << i;
    ceiling = std::min(ceiling * 2, absl::Seconds(5));
  }
  EXPECT_GE(backoff.Next(), absl::Milliseconds(2500));  // capped at 5 s, at least half of it
  backoff.Reset();
  EXPECT_LE(backoff.Next(), absl::Milliseconds(100));
}

TEST(Backoff, SameSeedSameWaits) {
  Backoff a(absl::Milliseconds(100), absl::Seconds(5), 7);
  Backoff b(absl::Milliseconds(100), absl::Seconds(5), 7);
  Backoff c(absl::Milliseconds(100), absl::Seconds(5), 8);
  std::vector<absl::Duration> wa, wb, wc;
  for (int i = 0; i < 5; ++i) {
    wa.push_back(a.Next());
    wb.push_back(b.Next());
    wc.push_back(c.Next());
  }
  EXPECT_EQ(wa, wb);
  EXPECT_NE(wa, wc);
}

TEST(DescribeJobEnd, ExitCodes) {
  JobEnd ok = DescribeJobEnd(ExitStatus{0, 0}, false);
  EXPECT_EQ(ok.state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.result, JobResult::kSucceeded);

  JobEnd failed = DescribeJobEnd(ExitStatus{3, 0}, false);
  EXPECT_EQ(failed.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.message, "exit code 3");
  EXPECT_EQ(failed.result, JobResult::kFailed);

  JobEnd killed = DescribeJobEnd(ExitStatus{0, 9}, false);
  EXPECT_EQ(killed.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(killed.exit_code, 137);
  EXPECT_EQ(killed.message, "killed by signal 9");
}

TEST(DescribeJobEnd, CancelWins) {
  JobEnd end = DescribeJobEnd(ExitStatus{0, 15}, true);
  EXPECT_EQ(end.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(end.message, "cancelled: killed by signal 15");
  EXPECT_EQ(end.result, JobResult::kCancelled);
  EXPECT_EQ(DescribeJobEnd(ExitStatus{0, 0}, true).state, v1::JOB_STATE_CANCELLED);
}

TEST(DescribeJobEnd, NeverStarted) {
  JobEnd end = DescribeJobEnd(absl::InternalError("cannot start the job: execve: ENOENT"), false);
  EXPECT_EQ(end.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(end.exit_code, -1);
  EXPECT_EQ(end.message, "cannot start the job: execve: ENOENT");
}

TEST(AgentMetrics, CountsJobs) {
  prometheus::Registry registry;
  AgentMetrics metrics(registry);
  metrics.ProcessStarted();
  metrics.ProcessStarted();
  metrics.ProcessEnded();
  metrics.JobFinished(JobResult::kFailed);
  metrics.SetConnected(true);
  EXPECT_EQ(MetricValue(registry, "sched_agent_running_jobs"), 1);
  EXPECT_EQ(MetricValue(registry, "sched_agent_jobs_started_total"), 2);
  EXPECT_EQ(MetricValue(registry, "sched_agent_jobs_finished_total", {{"result", "failed"}}), 1);
  EXPECT_EQ(MetricValue(registry, "sched_agent_jobs_finished_total", {{"result", "succeeded"}}), 0);
  EXPECT_EQ(MetricValue(registry, "sched_agent_jobs_finished_total", {{"result", "cancelled"}}), 0);
  EXPECT_EQ(MetricValue(registry, "sched_agent_connected"), 1);
}

TEST(GpuCollector, DcgmLabels) {
  GpuCollector collector([]() -> absl::StatusOr<std::vector<GpuSample>> {
    GpuSample s;
    s.device = GpuDevice{1, "GPU-abc", "NVIDIA H100 80GB HBM3", 80LL << 30};
    s.memory_used_bytes = 10LL << 30;
    s.utilization = 0.75;
    return std::vector<GpuSample>{s};
  });
  std::vector<prometheus::MetricFamily> families = collector.Collect();
  ASSERT_EQ(families.size(), 3u);
  const std::vector<prometheus::ClientMetric::Label> labels = {
      {"gpu", "1"}, {"UUID", "GPU-abc"}, {"modelName", "NVIDIA H100 80GB HBM3"}};
  EXPECT_EQ(families[0].name, "sched_agent_gpu_memory_used_bytes");
  ASSERT_EQ(families[0].metric.size(), 1u);
  EXPECT_EQ(families[0].metric[0].label, labels);
  EXPECT_EQ(families[0].metric[0].gauge.value, static_cast<double>(10LL << 30));
  EXPECT_EQ(families[1].name, "sched_agent_gpu_memory_total_bytes");
  EXPECT_EQ(families[1].metric[0].gauge.value, static_cast<double>(80LL << 30));
  EXPECT_EQ(families[2].name, "sched_agent_gpu_utilization_ratio");
  EXPECT_EQ(families[2].metric[0].gauge.value, 0.75);
}

TEST(GpuCollector, FailedSampleGivesNothing) {
  GpuCollector collector([]() -> absl::StatusOr<std::vector<GpuSample>> {
    return absl::UnavailableError("gpu fell off the bus");
  });
  EXPECT_TRUE(collector.Collect().empty());
}

TEST(Nvml, MissingLibraryIsUnavailable) {
  EXPECT_THAT(Nvml::Load("libnvidia-ml-does-not-exist.so.1"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("cannot open libnvidia-ml-does-not-exist.so.1")));
}

}  // namespace
}  // namespace sched::agent
