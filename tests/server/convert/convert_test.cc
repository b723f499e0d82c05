// Node capabilities and decisions survive core -> proto -> core, and bad values are refused.

#include "server/convert/convert.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched {
namespace {

using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

NodeCapabilities AdvertisedSpotNode() {
  NodeCapabilities caps;
  caps.cpu_millis = 8000;
  caps.memory_bytes = int64_t{32} << 30;
  caps.disk_bytes = int64_t{500} << 30;
  caps.gpus = {{0, "", "NVIDIA GeForce RTX 4090", int64_t{24} << 30},
               {1, "", "NVIDIA GeForce RTX 4090", int64_t{24} << 30}};
  caps.provider = "vastai";
  caps.price_per_hour = 0.40;
  caps.spot = true;
  caps.region = "us-east";
  caps.instance_type = "2x RTX 4090";
  caps.advertised = {"gpus", "provider"};
  caps.labels = {{"zone", "lab"}};
  caps.hostname = "box1";
  caps.gpu_detection = "advertised";
  caps.agent_version = "0.1.0";
  return caps;
}

TEST(CapabilitiesConvert, CostAndAdvertisedFieldsRoundTrip) {
  v1::Capabilities proto;
  CapabilitiesToProto(AdvertisedSpotNode(), &proto);
  EXPECT_TRUE(proto.spot());
  EXPECT_EQ(proto.region(), "us-east");
  EXPECT_FALSE(proto.has_local_price());
  absl::StatusOr<NodeCapabilities> back = CapabilitiesFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->provider, "vastai");
  EXPECT_DOUBLE_EQ(back->price_per_hour, 0.40);
  EXPECT_TRUE(back->spot);
  EXPECT_EQ(back->region, "us-east");
  EXPECT_EQ(back->instance_type, "2x RTX 4090");
  EXPECT_FALSE(back->local_price.has_value());
  EXPECT_THAT(back->advertised, ElementsAre("gpus", "provider"));
  EXPECT_EQ(back->gpu_detection, "advertised");
  ASSERT_EQ(back->gpus.size(), 2u);
  EXPECT_EQ(back->gpus[1].model, "NVIDIA GeForce RTX 4090");
  EXPECT_EQ(back->gpus[1].memory_bytes, int64_t{24} << 30);
  // And once more: the proto made from the result is the same message.
  v1::Capabilities again;
  CapabilitiesToProto(*back, &again);
  EXPECT_EQ(again.SerializeAsString(), proto.SerializeAsString());
}

TEST(CapabilitiesConvert, LocalPriceRoundTrips) {
  NodeCapabilities caps;
  caps.provider = "local";
  caps.price_per_hour = 0.1585;
  caps.local_price = LocalPrice{350, 0.30, 2000, 24, 0.105, 2000 / (24 * 730.0)};
  v1::Capabilities proto;
  CapabilitiesToProto(caps, &proto);
  ASSERT_TRUE(proto.has_local_price());
  EXPECT_DOUBLE_EQ(proto.local_price().power_watts(), 350);
  absl::StatusOr<NodeCapabilities> back = CapabilitiesFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->local_price.has_value());
  EXPECT_DOUBLE_EQ(back->local_price->electricity_dollars_per_kwh, 0.30);
  EXPECT_DOUBLE_EQ(back->local_price->hardware_cost_dollars, 2000);
  EXPECT_DOUBLE_EQ(back->local_price->amortize_months, 24);
  EXPECT_DOUBLE_EQ(back->local_price->energy_dollars_per_hour, 0.105);
  EXPECT_DOUBLE_EQ(back->local_price->amortization_dollars_per_hour, 2000 / (24 * 730.0));
}

TEST(CapabilitiesConvert, PriceScheduleRoundTrips) {
  NodeCapabilities caps = AdvertisedSpotNode();
  caps.price_schedule = {{{1320, 360, 0.08}, {1020, 1260, 0.45}}, -330};
  v1::Capabilities proto;
  CapabilitiesToProto(caps, &proto);
  ASSERT_EQ(proto.price_schedule().windows_size(), 2);
  EXPECT_EQ(proto.price_schedule().windows(0).start_minute(), 1320u);
  EXPECT_EQ(proto.price_schedule().windows(0).end_minute(), 360u);
  EXPECT_DOUBLE_EQ(proto.price_schedule().windows(1).dollars_per_hour(), 0.45);
  EXPECT_EQ(proto.price_schedule().utc_offset_minutes(), -330);
  absl::StatusOr<NodeCapabilities> back = CapabilitiesFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->price_schedule, caps.price_schedule);
  // No schedule: nothing on the wire, an empty one back.
  proto.Clear();
  CapabilitiesToProto(AdvertisedSpotNode(), &proto);
  EXPECT_FALSE(proto.has_price_schedule());
  back = CapabilitiesFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->price_schedule.empty());
}

TEST(CapabilitiesConvert, BadPriceScheduleIsRefused) {
  v1::Capabilities proto;
  v1::PriceWindow* w = proto.mutable_price_schedule()->add_windows();
  w->set_start_minute(60);
  w->set_end_minute(4'000'000'000u);
  w->set_dollars_per_hour(0.1);
  EXPECT_THAT(CapabilitiesFromProto(proto),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("capabilities.price_schedule: window 1 (60-1048576 min): "
                                 "end_minute must be in [0, 1440]")));
  w->set_end_minute(120);
  v1::PriceWindow* overlapping = proto.mutable_price_schedule()->add_windows();
  overlapping->set_start_minute(90);
  overlapping->set_end_minute(100);
  EXPECT_THAT(CapabilitiesFromProto(proto),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("windows 01:00-02:00 and 01:30-01:40 overlap")));
}

TEST(CapabilitiesConvert, NegativeLocalPricePartIsRefused) {
  v1::Capabilities proto;
  proto.mutable_local_price()->set_power_watts(-1);
  EXPECT_THAT(CapabilitiesFromProto(proto),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("capabilities.local_price: every part must be >= 0, got -1")));
}

// Every verdict and every blocker survives the round trip (a stored job is read back by name),
// and an option's unknown times stay unset.
TEST(DecisionConvert, EveryVerdictAndBlockerRoundTrips) {
  for (int b = 0; b <= static_cast<int>(kLastLocalBlocker); ++b) {
    Decision d;
    d.time = absl::FromUnixSeconds(1'700'000'000);
    d.placed = true;
    d.summary = "on ws";
    d.local_blocker = static_cast<LocalBlocker>(b);
    for (int v = 0; v <= static_cast<int>(kLastOptionVerdict); ++v) {
      DecisionOption& o = d.options.emplace_back();
      o.node = absl::StrCat("n", v);
      o.verdict = static_cast<OptionVerdict>(v);
      o.start = v % 2 == 0 ? absl::InfiniteFuture() : d.time;
      o.finish = v % 2 == 0 ? absl::InfiniteFuture() : d.time + absl::Hours(1);
      o.runtime = absl::Hours(1);
      o.cost = 1.5;
      o.deferred = v == 1;
      o.cost_at_earliest = v == 1 ? 2.5 : 0;
    }
    v1::Decision proto;
    DecisionToProto(d, &proto);
    EXPECT_FALSE(proto.options(0).has_start_time());
    EXPECT_FALSE(proto.options(0).has_finish_time());
    auto back = DecisionFromProto(proto);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->local_blocker, d.local_blocker);
    EXPECT_EQ(back->time, d.time);
    ASSERT_EQ(back->options.size(), d.options.size());
    for (size_t i = 0; i < d.options.size(); ++i) {
      EXPECT_EQ(back->options[i].verdict, d.options[i].verdict);
      EXPECT_EQ(back->options[i].start, d.options[i].start);
      EXPECT_EQ(back->options[i].finish, d.options[i].finish);
      EXPECT_EQ(back->options[i].deferred, d.options[i].deferred);
      EXPECT_DOUBLE_EQ(back->options[i].cost_at_earliest, d.options[i].cost_at_earliest);
    }
  }
  v1::Decision bad;
  bad.set_local_blocker("lunch");
  EXPECT_THAT(DecisionFromProto(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("decision.local_blocker: unknown \"lunch\"")));
  bad.set_local_blocker("");
  bad.add_options()->set_verdict("maybe");
  EXPECT_THAT(DecisionFromProto(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("decision.options.verdict")));
}

// Found by fuzzing: a stored time past the Timestamp range read back as another time, so a job
// changed across a restart. Times are now exact to the nanosecond over the whole range, and
// those outside it are refused.
TEST(JobConvert, TimesRoundTripExactlyAndOutOfRangeOnesAreRefused) {
  Job job;
  job.id = "0123456789abcdef";
  job.spec.run = "true";
  job.create_time = absl::FromUnixSeconds(253'402'300'799) + absl::Nanoseconds(999'999'999);
  job.update_time = absl::FromUnixSeconds(1'800'000'000) + absl::Nanoseconds(5);
  job.hold_until = absl::FromUnixSeconds(32'503'680'000);  // 3000-01-01, past 2262
  job.spec.not_before = absl::FromUnixSeconds(-1) + absl::Nanoseconds(250);
  v1::Job proto;
  JobToProto(job, &proto);
  absl::StatusOr<Job> back = JobFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->create_time, job.create_time);
  EXPECT_EQ(back->update_time, job.update_time);
  EXPECT_EQ(back->hold_until, job.hold_until);
  EXPECT_EQ(back->spec.not_before, job.spec.not_before);

  v1::Job bad = proto;
  bad.mutable_create_time()->set_seconds(std::numeric_limits<int64_t>::max());
  EXPECT_THAT(JobFromProto(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("create_time")));
  bad = proto;
  bad.mutable_spec()->mutable_deadline()->set_seconds(1'800'000'000);
  bad.mutable_spec()->mutable_deadline()->set_nanos(-1);
  EXPECT_THAT(JobFromProto(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deadline")));
  bad = proto;
  bad.add_attempts()->mutable_end_time()->set_seconds(-70'000'000'000);
  EXPECT_THAT(JobFromProto(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("attempts.end_time")));
}

// Retry policy and limits survive core -> proto -> core; out-of-range ones are refused.
TEST(JobConvert, RetryPolicyAndLimitsRoundTrip) {
  Job job;
  job.id = "0123456789abcdef";
  job.spec.run = "true";
  job.spec.retry.max_restarts = 3;
  job.spec.retry.exit_codes = {3, 137};
  job.spec.retry.backoff = absl::Seconds(30);
  job.spec.retry.max_backoff = absl::Minutes(5);
  job.spec.max_duration = absl::Hours(6);
  job.restarts = 2;
  job.run_time = absl::Minutes(90);
  job.spent = 1.25;
  job.stop_reason = "ran 6h, its max_duration is 6h";
  v1::Job proto;
  JobToProto(job, &proto);
  absl::StatusOr<Job> back = JobFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->spec.retry.max_restarts, 3u);
  EXPECT_THAT(back->spec.retry.exit_codes, ElementsAre(3, 137));
  EXPECT_EQ(back->spec.retry.backoff, absl::Seconds(30));
  EXPECT_EQ(back->spec.retry.max_backoff, absl::Minutes(5));
  EXPECT_EQ(back->spec.max_duration, absl::Hours(6));
  EXPECT_EQ(back->restarts, 2u);
  EXPECT_EQ(back->run_time, absl::Minutes(90));
  EXPECT_DOUBLE_EQ(back->spent, 1.25);
  EXPECT_EQ(back->stop_reason, job.stop_reason);
  // Without a retry policy none is written, and the defaults come back.
  Job plain;
  plain.id = job.id;
  plain.spec.run = "true";
  proto.Clear();
  JobToProto(plain, &proto);
  EXPECT_FALSE(proto.spec().has_retry());
  back = JobFromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->spec.retry.max_restarts, 0u);
  EXPECT_EQ(back->spec.retry.backoff, absl::Seconds(10));

  v1::Job bad = proto;
  bad.mutable_spec()->set_max_duration_seconds(-5);
  EXPECT_THAT(JobFromProto(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_duration")));
  bad = proto;
  bad.mutable_spec()->mutable_retry()->set_backoff_seconds(-1);
  EXPECT_THAT(JobFromProto(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retry.backoff")));
  bad = proto;
  bad.set_spent(std::nan(""));
  EXPECT_THAT(JobFromProto(bad).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sched
