#include "server/core/early_stopping.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched {
namespace {

using ::testing::HasSubstr;

RunCurve Curve(uint32_t index, std::vector<std::pair<int64_t, double>> points) {
  RunCurve c;
  c.index = index;
  for (const auto& [step, v] : points) c.samples.push_back({step, v});
  return c;
}

EarlyStopping Median(int64_t min_step = 1, uint32_t min_runs = 3) {
  return {"median", min_step, min_runs, 0, 0};
}

TEST(MedianStopping, StopsARunWorseThanTheMedianOfTheOthersAtItsStep) {
  const std::vector<RunCurve> others = {Curve(0, {{1, 0.9}, {2, 0.5}}),
                                        Curve(1, {{1, 0.8}, {2, 0.6}, {3, 0.4}}),
                                        Curve(2, {{1, 0.7}, {2, 0.7}})};
  // At step 2 the others had 0.5, 0.6, 0.7: median 0.6.
  EXPECT_THAT(ShouldStopEarly(Median(), false, "loss", Curve(3, {{2, 0.65}}), 1, others),
              HasSubstr("loss 0.65 at step 2 is worse than the median 0.6 of 3 other runs"));
  EXPECT_EQ(ShouldStopEarly(Median(), false, "loss", Curve(3, {{2, 0.6}}), 1, others), "");
  EXPECT_EQ(ShouldStopEarly(Median(), false, "loss", Curve(3, {{2, 0.55}}), 1, others), "");
  // Higher is better: the same value is now better than the median.
  EXPECT_EQ(ShouldStopEarly(Median(), true, "acc", Curve(3, {{2, 0.65}}), 1, others), "");
  EXPECT_NE(ShouldStopEarly(Median(), true, "acc", Curve(3, {{2, 0.59}}), 1, others), "");
  // Before min_step, or with fewer than min_runs others there, nobody is stopped.
  EXPECT_EQ(ShouldStopEarly(Median(3), false, "loss", Curve(3, {{2, 9.0}}), 1, others), "");
  // Only run 1 reached step 3.
  EXPECT_EQ(ShouldStopEarly(Median(), false, "loss", Curve(3, {{3, 9.0}}), 2, others), "");
  EXPECT_NE(ShouldStopEarly(Median(1, 1), false, "loss", Curve(3, {{3, 9.0}}), 2, others), "");
  // A run between steps counts with its last value before the step (run 1 at 1.5 is 0.8).
  EXPECT_NE(ShouldStopEarly(Median(1, 3), false, "loss", Curve(3, {{1, 0.85}}), -1, others), "");
  // An even count takes the mean of the middle two.
  const std::vector<RunCurve> four = {Curve(0, {{1, 1.0}}), Curve(1, {{1, 2.0}}),
                                      Curve(2, {{1, 3.0}}), Curve(3, {{1, 4.0}})};
  EXPECT_THAT(ShouldStopEarly(Median(), false, "loss", Curve(4, {{1, 2.6}}), -1, four),
              HasSubstr("median 2.5 of 4"));
}

TEST(AshaStopping, KeepsTheBestThirdAtEachRungJudgingEachRungOnce) {
  const EarlyStopping asha{"asha", 1, 0, 3, 27};
  // Rungs 1, 3, 9, 27. Five others reached rung 3 (their first value at or past it).
  const std::vector<RunCurve> others = {
      Curve(0, {{1, 0.9}, {3, 0.30}}), Curve(1, {{1, 0.8}, {3, 0.40}}),
      Curve(2, {{1, 0.7}, {4, 0.50}}), Curve(3, {{3, 0.60}}), Curve(4, {{1, 0.5}, {5, 0.70}}),
      Curve(5, {{1, 0.4}})};
  // n = 6 with this run: the best ceil(6/3) = 2 go on. 0.35 ranks 2nd: on; 0.45 ranks 3rd: off.
  EXPECT_EQ(ShouldStopEarly(asha, false, "loss", Curve(9, {{1, 0.1}, {3, 0.35}}), 1, others), "");
  EXPECT_THAT(ShouldStopEarly(asha, false, "loss", Curve(9, {{1, 0.1}, {3, 0.45}}), 1, others),
              HasSubstr("at rung 3 ranks 3 of 6 runs there; only the best 2 go on"));
  // Already judged at rung 3 (its previous report was at step 3): not judged again at step 4.
  EXPECT_EQ(ShouldStopEarly(asha, false, "loss", Curve(9, {{3, 0.35}, {4, 0.99}}), 3, others),
            "");
  // Alone at a rung it goes on; with two, the worse stops.
  EXPECT_EQ(ShouldStopEarly(asha, false, "loss", Curve(9, {{9, 5.0}}), 8, others), "");
  std::vector<RunCurve> with_one = others;
  with_one.push_back(Curve(6, {{9, 1.0}}));
  EXPECT_NE(ShouldStopEarly(asha, false, "loss", Curve(9, {{9, 5.0}}), 8, with_one), "");
  // Past max_step there are no rungs.
  EXPECT_EQ(ShouldStopEarly(asha, false, "loss", Curve(9, {{81, 5.0}}), 28, with_one), "");
  // maximize flips the order.
  EXPECT_EQ(ShouldStopEarly(asha, true, "acc", Curve(9, {{1, 0.1}, {3, 0.65}}), 1, others), "");
}

TEST(EarlyStopping, NoRuleOrNoSamplesNeverStops) {
  EXPECT_EQ(ShouldStopEarly({}, false, "loss", Curve(0, {{5, 100}}), 4, {}), "");
  EXPECT_EQ(ShouldStopEarly(Median(), false, "loss", RunCurve{}, -1, {}), "");
}

}  // namespace
}  // namespace sched
