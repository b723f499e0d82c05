// What the operator says about a node: --advertise_gpus, the config file, the local price, and
// the message for every bad value.

#include "agent/node_settings.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "agent/config_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace sched::agent {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::Pair;

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMiB = int64_t{1} << 20;

MATCHER_P3(AdvertisedGpu, index, model, memory_bytes, "") {
  return arg.index == static_cast<uint32_t>(index) && arg.uuid.empty() && arg.model == model &&
         arg.memory_bytes == memory_bytes;
}

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ParseGpuMemory, CardUnits) {
  EXPECT_THAT(ParseGpuMemory("24GB"), IsOkAndHolds(24 * kGiB));
  EXPECT_THAT(ParseGpuMemory("24 gib"), IsOkAndHolds(24 * kGiB));
  EXPECT_THAT(ParseGpuMemory("24564MiB"), IsOkAndHolds(24564 * kMiB));
  EXPECT_THAT(ParseGpuMemory("0.5GB"), IsOkAndHolds(512 * kMiB));
}

TEST(ParseGpuMemory, Errors) {
  EXPECT_THAT(ParseGpuMemory("24"), StatusIs(kInvalid, HasSubstr("\"24\" needs a unit")));
  EXPECT_THAT(ParseGpuMemory("24TB"), StatusIs(kInvalid, HasSubstr("\"24TB\" needs a unit")));
  EXPECT_THAT(ParseGpuMemory("GB"), StatusIs(kInvalid, HasSubstr("is not a number and a unit")));
  EXPECT_THAT(ParseGpuMemory("1.2.3GB"), StatusIs(kInvalid, HasSubstr("is not a number")));
  EXPECT_THAT(ParseGpuMemory("0GB"), StatusIs(kInvalid, HasSubstr("out of range")));
}

TEST(ParseAdvertisedGpus, CountsModelsAndIndexes) {
  EXPECT_THAT(ParseAdvertisedGpus("2x NVIDIA GeForce RTX 4090:24GB"),
              IsOkAndHolds(ElementsAre(AdvertisedGpu(0, "NVIDIA GeForce RTX 4090", 24 * kGiB),
                                       AdvertisedGpu(1, "NVIDIA GeForce RTX 4090", 24 * kGiB))));
  EXPECT_THAT(ParseAdvertisedGpus(" NVIDIA H100 80GB HBM3 : 80GB , 1xTesla T4:15360MiB"),
              IsOkAndHolds(ElementsAre(AdvertisedGpu(0, "NVIDIA H100 80GB HBM3", 80 * kGiB),
                                       AdvertisedGpu(1, "Tesla T4", 15360 * kMiB))));
}

TEST(ParseAdvertisedGpus, Errors) {
  EXPECT_THAT(ParseAdvertisedGpus(""),
              StatusIs(kInvalid, HasSubstr("advertise_gpus: empty; write [COUNTx ]MODEL:MEMORY")));
  EXPECT_THAT(ParseAdvertisedGpus("2x NVIDIA GeForce RTX 4090"),
              StatusIs(kInvalid, HasSubstr("advertise_gpus: \"2x NVIDIA GeForce RTX 4090\" has "
                                           "no memory: write [COUNTx ]MODEL:MEMORY")));
  EXPECT_THAT(ParseAdvertisedGpus("2x :24GB"),
              StatusIs(kInvalid, HasSubstr("advertise_gpus: \"2x :24GB\" has no model name")));
  EXPECT_THAT(ParseAdvertisedGpus("0x RTX 4090:24GB"),
              StatusIs(kInvalid, HasSubstr("\"0x RTX 4090:24GB\" has a count out of range")));
  EXPECT_THAT(ParseAdvertisedGpus("65x RTX 4090:24GB"),
              StatusIs(kInvalid, HasSubstr("count out of range (1 to 64)")));
  EXPECT_THAT(ParseAdvertisedGpus("40x A:1GB,40x B:1GB"),
              StatusIs(kInvalid, HasSubstr("advertise_gpus: at most 64 GPUs in all")));
  EXPECT_THAT(ParseAdvertisedGpus("RTX 4090:24"),
              StatusIs(kInvalid, HasSubstr("\"RTX 4090:24\" memory \"24\" needs a unit")));
  EXPECT_THAT(ParseAdvertisedGpus("A100:80GB,"),
              StatusIs(kInvalid, HasSubstr("\"\" has no memory")));
}

TEST(ResolvePrice, GivenPriceWins) {
  NodeSettings s;
  s.price_per_hour = 0.40;
  absl::StatusOr<Price> price = ResolvePrice(s);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_DOUBLE_EQ(price->per_hour, 0.40);
  EXPECT_FALSE(price->local_price.has_value());
}

TEST(ResolvePrice, NothingGivenIsFree) {
  absl::StatusOr<Price> price = ResolvePrice(NodeSettings{});
  ASSERT_TRUE(price.ok());
  EXPECT_EQ(price->per_hour, 0);
  EXPECT_FALSE(price->local_price.has_value());
}

// 350 W at $0.30/kWh, and $2190 of hardware over 36 months.
NodeSettings LocalBox() {
  NodeSettings s;
  s.power_watts = 350;
  s.electricity_per_kwh = 0.30;
  s.hardware_cost = 2190;
  s.amortize_months = 36;
  return s;
}

TEST(ResolvePrice, LocalPowerAndAmortization) {
  absl::StatusOr<Price> price = ResolvePrice(LocalBox());
  ASSERT_TRUE(price.ok()) << price.status();
  // 0.35 kW * $0.30 = $0.105/h; $2190 / (36 * 730 h) = $0.0833/h.
  ASSERT_TRUE(price->local_price.has_value());
  EXPECT_DOUBLE_EQ(price->local_price->energy_dollars_per_hour(), 0.105);
  EXPECT_DOUBLE_EQ(price->local_price->amortization_dollars_per_hour(), 2190.0 / (36 * 730));
  EXPECT_DOUBLE_EQ(price->per_hour, 0.105 + 2190.0 / (36 * 730));
  EXPECT_EQ(price->local_price->power_watts(), 350);
  EXPECT_EQ(price->local_price->hardware_cost_dollars(), 2190);
}

TEST(ResolvePrice, PowerOnly) {
  NodeSettings s;
  s.power_watts = 200;
  s.electricity_per_kwh = 0.25;
  absl::StatusOr<Price> price = ResolvePrice(s);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_DOUBLE_EQ(price->per_hour, 0.05);
  EXPECT_EQ(price->local_price->amortization_dollars_per_hour(), 0);
}

TEST(ResolvePrice, Errors) {
  NodeSettings power;
  power.power_watts = 350;
  EXPECT_THAT(ResolvePrice(power),
              StatusIs(kInvalid, HasSubstr("power_watts: given without electricity_per_kwh")));
  NodeSettings tariff;
  tariff.electricity_per_kwh = 0.3;
  EXPECT_THAT(ResolvePrice(tariff),
              StatusIs(kInvalid, HasSubstr("electricity_per_kwh: given without power_watts")));
  NodeSettings months;
  months.amortize_months = 24;
  EXPECT_THAT(ResolvePrice(months),
              StatusIs(kInvalid, HasSubstr("amortize_months: given without hardware_cost")));
  NodeSettings both;
  both.price_per_hour = 0.4;
  both.hardware_cost = 2000;
  both.amortize_months = 24;
  EXPECT_THAT(ResolvePrice(both),
              StatusIs(kInvalid, HasSubstr("price_per_hour: given with local price parts")));
}

MATCHER_P3(Window, start_minute, end_minute, usd_per_hour, "") {
  return arg.start_minute == start_minute && arg.end_minute == end_minute &&
         std::abs(arg.usd_per_hour - usd_per_hour) < 1e-12;
}

TEST(ResolvePrice, PriceScheduleInTheMachinesTimeZone) {
  NodeSettings s;
  s.price_per_hour = 0.30;
  s.price_schedule = "00:00-07:00=0.12, 17:00-21:00=0.45";
  absl::StatusOr<Price> price = ResolvePrice(s, /*local_utc_offset_minutes=*/60);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_DOUBLE_EQ(price->per_hour, 0.30);
  EXPECT_THAT(price->schedule.windows, ElementsAre(Window(0, 420, 0.12), Window(1020, 1260, 0.45)));
  EXPECT_EQ(price->schedule.utc_offset_minutes, 60);
  // An offset in the text wins over the machine's.
  s.price_schedule = "UTC-05:00; 22:00-06:00=0.1";
  price = ResolvePrice(s, 60);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_EQ(price->schedule.utc_offset_minutes, -300);
  // None given: no windows.
  s.price_schedule.reset();
  price = ResolvePrice(s, 60);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_TRUE(price->schedule.empty());
}

TEST(ResolvePrice, PriceSchedulePerKwhUsesPowerAndAmortization) {
  NodeSettings s = LocalBox();
  s.price_schedule = "22:00-06:00=0.08/kwh";
  absl::StatusOr<Price> price = ResolvePrice(s);
  ASSERT_TRUE(price.ok()) << price.status();
  // 0.35 kW * $0.08 + $2190 / (36 * 730 h).
  EXPECT_THAT(price->schedule.windows,
              ElementsAre(Window(1320, 360, 0.35 * 0.08 + 2190.0 / (36 * 730))));
}

TEST(ResolvePrice, BadPriceScheduleNamesTheSetting) {
  NodeSettings s;
  s.price_per_hour = 0.30;
  s.price_schedule = "00:00-07:00=0.1, 25:00-07:00=0.12";
  EXPECT_THAT(ResolvePrice(s),
              StatusIs(kInvalid, Eq("price_schedule: \"25:00-07:00=0.12\": bad start time "
                                    "\"25:00\": want HH:MM, 00:00 to 23:59")));
  s.price_schedule = "00:00-07:00=0.1, 06:00-08:00=0.2";
  EXPECT_THAT(ResolvePrice(s), StatusIs(kInvalid, HasSubstr("price_schedule: windows")));
  // A tariff needs the machine's power: a given price per hour does not have it.
  s.price_schedule = "00:00-07:00=0.08/kwh";
  EXPECT_THAT(ResolvePrice(s),
              StatusIs(kInvalid, HasSubstr("price_schedule: \"00:00-07:00=0.08/kwh\": a price "
                                           "per kWh needs the machine's power draw")));
}

TEST(ApplyNodeSettings, PriceScheduleReachesCapabilities) {
  NodeSettings s;
  s.price_per_hour = 0.30;
  s.price_schedule = "22:00-06:00=0.10";
  v1::Capabilities caps;
  ASSERT_THAT(ApplyNodeSettings(s, -300, &caps), IsOk());
  ASSERT_EQ(caps.price_schedule().windows_size(), 1);
  EXPECT_EQ(caps.price_schedule().windows(0).start_minute(), 1320u);
  EXPECT_EQ(caps.price_schedule().windows(0).end_minute(), 360u);
  EXPECT_DOUBLE_EQ(caps.price_schedule().windows(0).dollars_per_hour(), 0.10);
  EXPECT_EQ(caps.price_schedule().utc_offset_minutes(), -300);
  s.price_schedule.reset();
  ASSERT_THAT(ApplyNodeSettings(s, -300, &caps), IsOk());
  EXPECT_FALSE(caps.has_price_schedule());
}

TEST(ValidateNodeSettings, EveryBadValueNamesItsSetting) {
  const auto check = [](void (*set)(NodeSettings&), const std::string& message) {
    NodeSettings s;
    set(s);
    EXPECT_THAT(ValidateNodeSettings(s), StatusIs(kInvalid, HasSubstr(message)));
  };
  check([](NodeSettings& s) { s.price_per_hour = -1; },
        "price_per_hour: want 0 to 10000 dollars, got -1");
  check([](NodeSettings& s) { s.power_watts = 0; },
        "power_watts: want more than 0 to 100000 watts, got 0");
  check([](NodeSettings& s) { s.electricity_per_kwh = 30; },
        "electricity_per_kwh: want 0 to 10 dollars (not cents) per kWh, got 30");
  check([](NodeSettings& s) { s.hardware_cost = -5; }, "hardware_cost: want 0 to 10000000");
  check([](NodeSettings& s) { s.amortize_months = 0; },
        "amortize_months: want more than 0 to 1200 months, got 0");
  check([](NodeSettings& s) { s.provider = "Vast AI"; },
        "provider: want 1 to 63 of a-z, 0-9, '.', '_', '-' (\"vastai\"), got \"Vast AI\"");
  check([](NodeSettings& s) { s.region = "us\neast"; },
        "region: want at most 63 printable characters on one line");
  check([](NodeSettings& s) { s.instance_type = std::string(64, 'x'); },
        "instance_type: want at most 63 printable characters");
  EXPECT_TRUE(ValidateNodeSettings(NodeSettings{}).ok());
}

TEST(ApplyNodeSettings, ProviderIsAdvertisedOnlyWhenItReplacesTheDetectedOne) {
  NodeSettings s;
  s.provider = "vastai";
  s.price_per_hour = 0.40;
  s.spot = true;
  s.region = "us-east";
  s.instance_type = "2x RTX 4090";
  v1::Capabilities local;
  local.set_provider("local");
  ASSERT_TRUE(ApplyNodeSettings(s, 0, &local).ok());
  EXPECT_EQ(local.provider(), "vastai");
  EXPECT_THAT(local.advertised(), ElementsAre("provider"));
  EXPECT_DOUBLE_EQ(local.price_per_hour(), 0.40);
  EXPECT_TRUE(local.spot());
  EXPECT_EQ(local.region(), "us-east");
  EXPECT_EQ(local.instance_type(), "2x RTX 4090");
  EXPECT_FALSE(local.has_local_price());

  v1::Capabilities vast;
  vast.set_provider("vastai");
  ASSERT_TRUE(ApplyNodeSettings(s, 0, &vast).ok());
  EXPECT_THAT(vast.advertised(), ::testing::IsEmpty());
}

TEST(Overlay, FlagsWinOverTheFile) {
  NodeSettings file;
  file.price_per_hour = 0.5;
  file.region = "eu";
  file.spot = true;
  NodeSettings flags;
  flags.price_per_hour = 0.4;
  flags.spot = false;
  NodeSettings merged = Overlay(file, flags);
  EXPECT_THAT(merged.price_per_hour, Optional(0.4));
  EXPECT_THAT(merged.spot, Optional(false));
  EXPECT_THAT(merged.region, Optional(std::string("eu")));
  EXPECT_FALSE(merged.provider.has_value());
  file.price_schedule = "00:00-07:00=0.1";
  EXPECT_THAT(Overlay(file, flags).price_schedule, Optional(std::string("00:00-07:00=0.1")));
  flags.price_schedule = "01:00-02:00=0.2";
  EXPECT_THAT(Overlay(file, flags).price_schedule, Optional(std::string("01:00-02:00=0.2")));
}

TEST(ParseAgentConfig, EveryKey) {
  absl::StatusOr<NodeSettings> s = ParseAgentConfig(R"(# a GPU-less box playing a rented one
provider: vastai
region: us-east
instance_type: 2x RTX 4090
spot: true
price_per_hour: 0.40
labels: {zone: lab, tier: demo}
advertise_gpus:
  - count: 2
    model: NVIDIA GeForce RTX 4090
    memory: 24GB
  - Tesla T4:15360MiB
)");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->provider, Optional(std::string("vastai")));
  EXPECT_THAT(s->region, Optional(std::string("us-east")));
  EXPECT_THAT(s->instance_type, Optional(std::string("2x RTX 4090")));
  EXPECT_THAT(s->spot, Optional(true));
  EXPECT_THAT(s->price_per_hour, Optional(0.40));
  EXPECT_THAT(s->labels, Optional(ElementsAre(Pair("tier", "demo"), Pair("zone", "lab"))));
  ASSERT_TRUE(s->advertise_gpus.has_value());
  EXPECT_THAT(*s->advertise_gpus,
              ElementsAre(AdvertisedGpu(0, "NVIDIA GeForce RTX 4090", 24 * kGiB),
                          AdvertisedGpu(1, "NVIDIA GeForce RTX 4090", 24 * kGiB),
                          AdvertisedGpu(2, "Tesla T4", 15360 * kMiB)));
}

TEST(ParseAgentConfig, LocalPriceAndFlagSyntaxForGpus) {
  absl::StatusOr<NodeSettings> s = ParseAgentConfig(R"(power_watts: 350
electricity_per_kwh: 0.30
hardware_cost: 2190
amortize_months: 36
advertise_gpus: "1x NVIDIA GeForce RTX 3080:10GB"
labels: "zone=home"
)");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->power_watts, Optional(350.0));
  EXPECT_THAT(s->amortize_months, Optional(36.0));
  EXPECT_THAT(s->labels, Optional(ElementsAre(Pair("zone", "home"))));
  EXPECT_THAT(s->advertise_gpus,
              Optional(ElementsAre(AdvertisedGpu(0, "NVIDIA GeForce RTX 3080", 10 * kGiB))));
  EXPECT_THAT(ResolvePrice(*s), IsOk());
}

TEST(ParseAgentConfig, PriceScheduleAsTextOrList) {
  absl::StatusOr<NodeSettings> s =
      ParseAgentConfig("price_schedule: UTC+01:00; 00:00-07:00=0.12, 17:00-21:00=0.45\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->price_schedule,
              Optional(std::string("UTC+01:00; 00:00-07:00=0.12, 17:00-21:00=0.45")));
  s = ParseAgentConfig(R"(price_per_hour: 0.30
price_schedule:
  - 00:00-07:00=0.12
  - "17:00-21:00=0.45"
)");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->price_schedule, Optional(std::string("00:00-07:00=0.12, 17:00-21:00=0.45")));
  absl::StatusOr<Price> price = ResolvePrice(*s);
  ASSERT_TRUE(price.ok()) << price.status();
  EXPECT_EQ(price->schedule.windows.size(), 2u);
}

TEST(ParseAgentConfig, EmptyFileSetsNothing) {
  absl::StatusOr<NodeSettings> s = ParseAgentConfig("# nothing yet\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->price_per_hour.has_value());
  EXPECT_FALSE(s->advertise_gpus.has_value());
}

TEST(ParseAgentConfig, Errors) {
  EXPECT_THAT(ParseAgentConfig("pricee_per_hour: 1\n"),
              StatusIs(kInvalid, HasSubstr("\"pricee_per_hour\" (line 1): unknown key; known: "
                                           "advertise_gpus, amortize_months,")));
  EXPECT_THAT(
      ParseAgentConfig("region: eu\nprice_per_hour: cheap\n"),
      StatusIs(kInvalid, HasSubstr("price_per_hour (line 2): want a number, got \"cheap\"")));
  EXPECT_THAT(ParseAgentConfig("spot: maybe\n"),
              StatusIs(kInvalid, HasSubstr("spot (line 1): want true or false, got \"maybe\"")));
  EXPECT_THAT(ParseAgentConfig("provider: [a, b]\n"),
              StatusIs(kInvalid, HasSubstr("provider (line 1): want a string, got a list")));
  EXPECT_THAT(ParseAgentConfig("- a\n- b\n"),
              StatusIs(kInvalid, HasSubstr("want a mapping of settings, got a list")));
  EXPECT_THAT(ParseAgentConfig("spot: [\n"), StatusIs(kInvalid, HasSubstr("not YAML")));
  EXPECT_THAT(ParseAgentConfig("power_watts: -3\n"),
              StatusIs(kInvalid, HasSubstr("power_watts: want more than 0")));
  EXPECT_THAT(ParseAgentConfig("labels: [a]\n"),
              StatusIs(kInvalid, HasSubstr("labels (line 1): want a mapping of strings")));
  EXPECT_THAT(ParseAgentConfig("advertise_gpus:\n  - RTX 4090\n"),
              StatusIs(kInvalid, HasSubstr("line 2: advertise_gpus: \"RTX 4090\" has no memory")));
  EXPECT_THAT(ParseAgentConfig("advertise_gpus:\n  - {count: 2, model: A100, vram: 80GB}\n"),
              StatusIs(kInvalid, HasSubstr("unknown key \"vram\" (count, model, memory)")));
  EXPECT_THAT(
      ParseAgentConfig("advertise_gpus:\n  - {count: two, model: A100, memory: 80GB}\n"),
      StatusIs(kInvalid, HasSubstr("advertise_gpus.count (line 2): want a whole number, got "
                                   "\"two\"")));
  EXPECT_THAT(ParseAgentConfig("advertise_gpus:\n  - {count: 0, model: A100, memory: 80GB}\n"),
              StatusIs(kInvalid, HasSubstr("count out of range (1 to 64)")));
  EXPECT_THAT(ParseAgentConfig("advertise_gpus: []\n"),
              StatusIs(kInvalid, HasSubstr("advertise_gpus (line 1): want a string or a list")));
  EXPECT_THAT(ParseAgentConfig("price_schedule: {night: 0.1}\n"),
              StatusIs(kInvalid, HasSubstr("price_schedule (line 1): want a string or a list of "
                                           "windows like 00:00-07:00=0.12, got a mapping")));
  EXPECT_THAT(ParseAgentConfig("price_schedule:\n  - [00:00, 07:00]\n"),
              StatusIs(kInvalid, HasSubstr("price_schedule (line 2): want a string, got a list")));
}

TEST(LoadAgentConfig, ErrorsNameTheFile) {
  const std::string dir = sched::testing::MakeTempDir("sched_agent_config_");
  const std::string path = dir + "/agent.yaml";
  std::ofstream(path) << "spot: sometimes\n";
  EXPECT_THAT(LoadAgentConfig(path),
              StatusIs(kInvalid, HasSubstr(path + ": spot (line 1): want true or false")));
  EXPECT_THAT(LoadAgentConfig(dir + "/missing.yaml"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.yaml: cannot open")));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace sched::agent
