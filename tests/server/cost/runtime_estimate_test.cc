#include "server/cost/runtime_estimate.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/cost/test_catalog.h"
#include "tests/testing/status_matchers.h"

namespace sched::cost {
namespace {

using ::sched::cost::testing::SmallCatalogData;
using ::sched::testing::IsOk;
using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::Eq;
using ::testing::HasSubstr;

// rtx3080 0.3, a100-80gb 1.0 (reference), h100-80gb 2.0.
class RuntimeEstimateTest : public ::testing::Test {
 protected:
  Catalog catalog_ = Catalog::Create(SmallCatalogData()).value();
};

const GpuAllocation kCpu{};
GpuAllocation Gpus(const char* model, int count = 1) { return {model, count}; }

TEST_F(RuntimeEstimateTest, ThroughputOfOneAndManyGpus) {
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100")), IsOkAndHolds(DoubleNear(1.0, 1e-12)));
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("NVIDIA GeForce RTX 3080")),
              IsOkAndHolds(DoubleNear(0.3, 1e-12)));
  // n * 0.9^log2(n): 2 -> 1.8, 4 -> 3.24, 8 -> 5.832.
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100", 2)), IsOkAndHolds(DoubleNear(1.8, 1e-9)));
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100", 4)),
              IsOkAndHolds(DoubleNear(3.24, 1e-9)));
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("h100", 8)),
              IsOkAndHolds(DoubleNear(2 * 5.832, 1e-9)));
  RuntimeOptions perfect;
  perfect.multi_gpu_efficiency = 1.0;
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100", 3), perfect),
              IsOkAndHolds(DoubleNear(3.0, 1e-9)));
}

TEST_F(RuntimeEstimateTest, ThroughputErrors) {
  EXPECT_THAT(AllocationThroughput(catalog_, kCpu),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("no GPU model: CPU only")));
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100", 0)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("GPU count for a100: must be at least 1, got 0")));
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("v100")),
              StatusIs(absl::StatusCode::kNotFound, Eq("GPU \"v100\" is not in the catalog")));
  RuntimeOptions bad;
  bad.multi_gpu_efficiency = 1.5;
  EXPECT_THAT(AllocationThroughput(catalog_, Gpus("a100"), bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("multi_gpu_efficiency: must be in (0, 1], got 1.5")));
}

TEST_F(RuntimeEstimateTest, ScalesAReferenceRuntimeToAnotherGpu) {
  // 3 h on an A100 80GB: 10 h on an RTX 3080 (0.3), 1.5 h on an H100 (2.0).
  EXPECT_THAT(ScaleRuntime(catalog_, absl::Hours(3), Gpus("a100-80gb"), Gpus("rtx3080")),
              IsOkAndHolds(Eq(absl::Hours(10))));
  EXPECT_THAT(ScaleRuntime(catalog_, absl::Hours(3), Gpus("a100-80gb"), Gpus("h100")),
              IsOkAndHolds(Eq(absl::Minutes(90))));
  // Two A100s: 3 h / 1.8.
  absl::StatusOr<absl::Duration> two =
      ScaleRuntime(catalog_, absl::Hours(3), Gpus("a100"), Gpus("a100", 2));
  ASSERT_THAT(two, IsOk());
  EXPECT_NEAR(absl::ToDoubleHours(*two), 3 / 1.8, 1e-9);
  // And back from four 3080s to one H100.
  absl::StatusOr<absl::Duration> back =
      ScaleRuntime(catalog_, absl::Hours(2), Gpus("3080", 4), Gpus("h100"));
  ASSERT_THAT(back, IsOk());
  EXPECT_NEAR(absl::ToDoubleHours(*back), 2 * 0.3 * 3.24 / 2.0, 1e-9);
}

TEST_F(RuntimeEstimateTest, ScaleErrors) {
  EXPECT_THAT(ScaleRuntime(catalog_, absl::ZeroDuration(), Gpus("a100"), Gpus("h100")),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("runtime: must be positive, got 0")));
  EXPECT_THAT(ScaleRuntime(catalog_, absl::Hours(1), kCpu, Gpus("h100")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CPU-only")));
  EXPECT_THAT(ScaleRuntime(catalog_, absl::Hours(1), Gpus("a100"), kCpu),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CPU-only")));
  EXPECT_THAT(ScaleRuntime(catalog_, absl::Hours(1), Gpus("a100"), Gpus("mi300x")),
              StatusIs(absl::StatusCode::kNotFound, Eq("GPU \"mi300x\" is not in the catalog")));
}

TEST_F(RuntimeEstimateTest, HistoryMedianOfNormalizedRuns) {
  // In A100-hours: 0.9 (3 h x 0.3), 1.0, 1.2 (0.6 h x 2.0), 5.0 (an outlier): median 1.1.
  const std::vector<PastRun> runs = {
      {Gpus("rtx3080"), absl::Hours(3)},
      {Gpus("a100"), absl::Hours(1)},
      {Gpus("NVIDIA H100 80GB HBM3"), absl::Minutes(36)},
      {Gpus("a100"), absl::Hours(5)},
  };
  absl::StatusOr<HistoryEstimate> e = EstimateFromHistory(catalog_, runs, Gpus("a100"));
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->runs_used, 4);
  EXPECT_EQ(e->runs_skipped, 0);
  EXPECT_NEAR(absl::ToDoubleHours(e->runtime), 1.1, 1e-9);
  e = EstimateFromHistory(catalog_, runs, Gpus("3080"));
  ASSERT_THAT(e, IsOk());
  EXPECT_NEAR(absl::ToDoubleHours(e->runtime), 1.1 / 0.3, 1e-9);
  // An odd count takes the middle run.
  e = EstimateFromHistory(catalog_, absl::MakeConstSpan(runs).subspan(0, 3), Gpus("h100"));
  ASSERT_THAT(e, IsOk());
  EXPECT_NEAR(absl::ToDoubleHours(e->runtime), 1.0 / 2.0, 1e-9);
}

TEST_F(RuntimeEstimateTest, HistoryNormalizesGpuCount) {
  // 1 h on 2 A100s is 1.8 A100-hours; on 4 A100s that is 1.8 / 3.24 h.
  const std::vector<PastRun> runs = {{Gpus("a100", 2), absl::Hours(1)}};
  absl::StatusOr<HistoryEstimate> e = EstimateFromHistory(catalog_, runs, Gpus("a100", 4));
  ASSERT_THAT(e, IsOk());
  EXPECT_NEAR(absl::ToDoubleHours(e->runtime), 1.8 / 3.24, 1e-9);
  EXPECT_EQ(e->runs_used, 1);
}

TEST_F(RuntimeEstimateTest, HistorySkipsRunsItCannotCompare) {
  const std::vector<PastRun> runs = {
      {kCpu, absl::Hours(20)},
      {Gpus("v100"), absl::Hours(2)},       // not in the catalog
      {Gpus("a100"), absl::ZeroDuration()},  // no duration
      {Gpus("a100"), absl::Hours(2)},
  };
  absl::StatusOr<HistoryEstimate> e = EstimateFromHistory(catalog_, runs, Gpus("a100"));
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->runs_used, 1);
  EXPECT_EQ(e->runs_skipped, 3);
  EXPECT_EQ(e->runtime, absl::Hours(2));

  // A CPU-only target learns from the CPU-only runs only.
  e = EstimateFromHistory(catalog_, runs, kCpu);
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->runs_used, 1);
  EXPECT_EQ(e->runs_skipped, 3);
  EXPECT_EQ(e->runtime, absl::Hours(20));
}

TEST_F(RuntimeEstimateTest, HistoryNotAvailable) {
  EXPECT_THAT(EstimateFromHistory(catalog_, {}, Gpus("a100")),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("no past run to learn from (0 run(s) were CPU-only or on GPUs the "
                          "catalog lacks)")));
  const std::vector<PastRun> gpu_only = {{Gpus("a100"), absl::Hours(1)}};
  EXPECT_THAT(EstimateFromHistory(catalog_, gpu_only, kCpu),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("no past run to learn from (1 run(s) had GPUs)")));
  EXPECT_THAT(EstimateFromHistory(catalog_, gpu_only, Gpus("b200")),
              StatusIs(absl::StatusCode::kNotFound, Eq("GPU \"b200\" is not in the catalog")));
}

TEST_F(RuntimeEstimateTest, GivenRuntimeWinsOverHistory) {
  const std::vector<PastRun> history = {{Gpus("a100"), absl::Hours(8)}};
  const GpuAllocation reference = Gpus(catalog_.reference_gpu().key.c_str());
  absl::StatusOr<RuntimeEstimate> e =
      EstimateRuntime(catalog_, absl::Hours(3), reference, history, Gpus("rtx3080"));
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->basis, RuntimeBasis::kGiven);
  EXPECT_EQ(e->runtime, absl::Hours(10));

  e = EstimateRuntime(catalog_, std::nullopt, reference, history, Gpus("h100"));
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->basis, RuntimeBasis::kHistory);
  EXPECT_EQ(e->runs_used, 1);
  EXPECT_EQ(e->runtime, absl::Hours(4));

  // CPU only, given for CPU only: as it is.
  e = EstimateRuntime(catalog_, absl::Hours(5), kCpu, {}, kCpu);
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->runtime, absl::Hours(5));
}

TEST_F(RuntimeEstimateTest, EstimateRuntimeErrors) {
  const GpuAllocation reference = Gpus("a100");
  EXPECT_THAT(EstimateRuntime(catalog_, std::nullopt, reference, {}, Gpus("a100")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(EstimateRuntime(catalog_, absl::Hours(1), kCpu, {}, Gpus("a100")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CPU-only")));
  EXPECT_THAT(EstimateRuntime(catalog_, absl::Hours(-1), kCpu, {}, kCpu),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("runtime: must be positive, got -1h")));
}

}  // namespace
}  // namespace sched::cost
