#include "server/cost/catalog.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/cost/test_catalog.h"
#include "tests/testing/status_matchers.h"

namespace sched::cost {
namespace {

using ::sched::cost::testing::SmallCatalogData;
using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::Eq;
using ::testing::Field;

Catalog Small() { return Catalog::Create(SmallCatalogData()).value(); }

TEST(CatalogTest, FindsGpuByKeyNvmlNameOrAliasIgnoringCase) {
  Catalog c = Small();
  ASSERT_NE(c.FindGpu("a100-80gb"), nullptr);
  EXPECT_EQ(c.FindGpu("NVIDIA A100-SXM4-80GB"), c.FindGpu("a100-80gb"));
  EXPECT_EQ(c.FindGpu("nvidia a100 80gb pcie"), c.FindGpu("a100-80gb"));
  EXPECT_EQ(c.FindGpu("  A100 "), c.FindGpu("a100-80gb"));
  EXPECT_EQ(c.FindGpu("3080")->name(), "NVIDIA GeForce RTX 3080");
  EXPECT_EQ(c.FindGpu("RTX3080")->memory_bytes, 10240LL << 20);
  EXPECT_EQ(c.FindGpu("h200"), nullptr);
  EXPECT_EQ(c.reference_gpu().key, "a100-80gb");
  EXPECT_EQ(c.as_of(), "2026-11");
}

TEST(CatalogTest, FindsProviderIgnoringCase) {
  Catalog c = Small();
  ASSERT_NE(c.FindProvider("RunPod"), nullptr);
  EXPECT_EQ(c.FindProvider("runpod")->preemption_notice, absl::Seconds(5));
  EXPECT_TRUE(c.FindProvider("local")->local);
  EXPECT_EQ(c.FindProvider("lambda"), nullptr);
}

TEST(CatalogTest, PriceOnDemandSpotFromDiscountAndExplicitSpot) {
  Catalog c = Small();
  absl::StatusOr<PriceRange> on_demand = c.Price("runpod", "NVIDIA A100-SXM4-80GB", false);
  ASSERT_THAT(on_demand, IsOk());
  EXPECT_DOUBLE_EQ(on_demand->min_usd_per_hour, 1.19);
  EXPECT_DOUBLE_EQ(on_demand->max_usd_per_hour, 1.89);
  EXPECT_DOUBLE_EQ(on_demand->typical(), 1.54);

  absl::StatusOr<PriceRange> spot = c.Price("runpod", "a100", true);
  ASSERT_THAT(spot, IsOk());
  EXPECT_THAT(*spot, Field(&PriceRange::min_usd_per_hour, DoubleNear(1.19 * 0.6, 1e-9)));
  EXPECT_THAT(*spot, Field(&PriceRange::max_usd_per_hour, DoubleNear(1.89 * 0.6, 1e-9)));

  // A price listed by alias is found by any name of the model; an explicit spot range wins.
  spot = c.Price("runpod", "h100-80gb", true);
  ASSERT_THAT(spot, IsOk());
  EXPECT_DOUBLE_EQ(spot->max_usd_per_hour, 1.5);
}

TEST(CatalogTest, PriceErrors) {
  Catalog c = Small();
  EXPECT_THAT(c.Price("lambda", "a100", false),
              StatusIs(absl::StatusCode::kNotFound, Eq("unknown provider \"lambda\"")));
  EXPECT_THAT(c.Price("runpod", "h200", false),
              StatusIs(absl::StatusCode::kNotFound, Eq("unknown GPU \"h200\"")));
  EXPECT_THAT(c.Price("runpod", "3080", false),
              StatusIs(absl::StatusCode::kNotFound, Eq("runpod has no price for rtx3080")));
  CatalogData d = SmallCatalogData();
  d.providers[1].offers_spot = false;
  d.providers[1].prices[1].spot.reset();
  Catalog no_spot = Catalog::Create(d).value();
  EXPECT_THAT(no_spot.Price("runpod", "a100", true),
              StatusIs(absl::StatusCode::kFailedPrecondition, Eq("runpod offers no spot instances")));
}

TEST(CatalogTest, MergeReplacesByKeyAndAddsNew) {
  CatalogData over;
  GpuModel faster = SmallCatalogData().gpus[0];
  faster.key = "RTX3080";  // keys match ignoring case
  faster.relative_throughput = 0.35;
  GpuModel new_gpu{"rtx4090", {"NVIDIA GeForce RTX 4090"}, {"4090"}, 24564LL << 20, 0.65, 450,
                   2000};
  over.gpus = {faster, new_gpu};
  Provider local;
  local.name = "local";
  local.local = true;
  local.electricity_usd_per_kwh = 0.32;
  over.providers = {local};
  over.as_of = "2026-12";

  CatalogData merged = MergeCatalogData(SmallCatalogData(), over);
  ASSERT_EQ(merged.gpus.size(), 4u);
  EXPECT_EQ(merged.gpus[0].relative_throughput, 0.35);  // replaced in place
  EXPECT_EQ(merged.gpus[3].key, "rtx4090");              // added at the end
  EXPECT_EQ(merged.as_of, "2026-12");
  EXPECT_EQ(merged.reference_gpu, "a100-80gb");  // kept: the override left it out
  absl::StatusOr<Catalog> c = Catalog::Create(merged);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->FindProvider("local")->electricity_usd_per_kwh, 0.32);
  EXPECT_EQ(c->FindProvider("runpod")->prices.size(), 2u);
  EXPECT_EQ(c->FindGpu("4090")->key, "rtx4090");
}

TEST(CatalogTest, UpgradesSectionAndItsDefault) {
  Catalog c = Small();
  EXPECT_EQ(c.upgrades().ram_usd_per_gib, 4.0);
  EXPECT_EQ(c.upgrades().ram_kit_bytes, (std::vector<int64_t>{64LL << 30, 128LL << 30}));
  EXPECT_EQ(c.upgrades().max_gpus, 2);

  CatalogData none = SmallCatalogData();
  none.upgrades.reset();
  Catalog without = Catalog::Create(none).value();
  EXPECT_EQ(without.upgrades().ram_usd_per_gib, 0);
  EXPECT_TRUE(without.upgrades().ram_kit_bytes.empty());
  EXPECT_EQ(without.upgrades().max_gpus, 1);
}

TEST(CatalogTest, MergeReplacesTheWholeUpgradesSectionOrKeepsIt) {
  CatalogData over;
  over.upgrades = UpgradeData{};
  over.upgrades->max_gpus = 4;
  CatalogData merged = MergeCatalogData(SmallCatalogData(), over);
  ASSERT_TRUE(merged.upgrades.has_value());
  EXPECT_EQ(merged.upgrades->max_gpus, 4);
  EXPECT_TRUE(merged.upgrades->ram_kit_bytes.empty());  // not kept: the section is replaced
  EXPECT_EQ(merged.upgrades->ram_usd_per_gib, 0);

  CatalogData kept = MergeCatalogData(SmallCatalogData(), CatalogData{});
  ASSERT_TRUE(kept.upgrades.has_value());
  EXPECT_EQ(kept.upgrades->ram_usd_per_gib, 4.0);
}

TEST(CatalogTest, CopyOutlivesTheOriginal) {
  std::optional<Catalog> a = Small();
  Catalog b = *a;
  a.reset();
  EXPECT_EQ(b.reference_gpu().key, "a100-80gb");
  EXPECT_EQ(b.FindGpu("h100")->key, "h100-80gb");
}

struct CreateCase {
  const char* name;
  void (*mutate)(CatalogData*);
  const char* message;
};

class CatalogCreateErrorTest : public ::testing::TestWithParam<CreateCase> {};

TEST_P(CatalogCreateErrorTest, NamesTheEntryAndTheReason) {
  CatalogData d = SmallCatalogData();
  GetParam().mutate(&d);
  EXPECT_THAT(Catalog::Create(d),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(
    All, CatalogCreateErrorTest,
    ::testing::Values(
        CreateCase{"NoAsOf", [](CatalogData* d) { d->as_of.clear(); },
                   "as_of: missing: say when the figures are from"},
        CreateCase{"EmptyKey", [](CatalogData* d) { d->gpus[0].key = " "; },
                   "gpus[0]: key: must not be empty"},
        CreateCase{"NoNvmlName", [](CatalogData* d) { d->gpus[0].nvml_names.clear(); },
                   "gpu rtx3080: nvml_names: must name at least one model"},
        CreateCase{"EmptyAlias", [](CatalogData* d) { d->gpus[0].aliases = {"x", ""}; },
                   "gpu rtx3080: aliases[1]: must not be empty"},
        CreateCase{"ZeroMemory", [](CatalogData* d) { d->gpus[1].memory_bytes = 0; },
                   "gpu a100-80gb: memory: must be more than 0, got 0"},
        CreateCase{"NegativeThroughput",
                   [](CatalogData* d) { d->gpus[0].relative_throughput = -0.5; },
                   "gpu rtx3080: relative_throughput: must be more than 0, got -0.5"},
        CreateCase{"ZeroWatts", [](CatalogData* d) { d->gpus[0].power_watts = 0; },
                   "gpu rtx3080: power_watts: must be more than 0, got 0"},
        CreateCase{"NegativeStreetPrice", [](CatalogData* d) { d->gpus[0].street_price_usd = -1; },
                   "gpu rtx3080: street_price_usd: must not be negative, got -1"},
        CreateCase{"AliasUsedTwice", [](CatalogData* d) { d->gpus[2].aliases = {"A100"}; },
                   "gpu h100-80gb: name \"A100\" is already used by gpu a100-80gb"},
        CreateCase{"ProviderTwice", [](CatalogData* d) { d->providers[1].name = "Local"; },
                   "provider Local: listed twice"},
        CreateCase{"UnknownPriceGpu", [](CatalogData* d) { d->providers[1].prices[0].gpu = "h200"; },
                   "provider runpod: prices[0].gpu: unknown GPU \"h200\""},
        CreateCase{"MinAboveMax",
                   [](CatalogData* d) { d->providers[1].prices[0].on_demand = {2.0, 1.0}; },
                   "provider runpod: prices[0].on_demand: min 2 is above max 1"},
        CreateCase{"NegativePrice",
                   [](CatalogData* d) { d->providers[1].prices[1].spot = PriceRange{-1, 1}; },
                   "provider runpod: prices[1].spot.min: must not be negative, got -1"},
        CreateCase{"SpotPriceWithoutSpot",
                   [](CatalogData* d) { d->providers[1].offers_spot = false; },
                   "provider runpod: prices[1].spot: the provider offers no spot instances"},
        CreateCase{"DiscountAboveOne", [](CatalogData* d) { d->providers[1].spot_discount = 1.5; },
                   "provider runpod: spot.discount: must be between 0 and 1, got 1.5"},
        CreateCase{"FreeSpot", [](CatalogData* d) { d->providers[1].spot_discount = 1; },
                   "provider runpod: spot.discount: must be below 1 (spot is not free)"},
        CreateCase{"PreemptionRate",
                   [](CatalogData* d) { d->providers[1].spot_preemptions_per_hour = -0.1; },
                   "provider runpod: spot.preemptions_per_hour: must be between 0 and 1, got -0.1"},
        CreateCase{"NegativeNotice",
                   [](CatalogData* d) { d->providers[1].preemption_notice = absl::Seconds(-1); },
                   "provider runpod: spot.notice: must not be negative"},
        CreateCase{"NegativeProvisioning",
                   [](CatalogData* d) { d->providers[1].provisioning_time = absl::Seconds(-1); },
                   "provider runpod: provisioning: must not be negative"},
        CreateCase{"CloudElectricity",
                   [](CatalogData* d) { d->providers[1].electricity_usd_per_kwh = 0.2; },
                   "provider runpod: electricity_usd_per_kwh: only a local provider pays for "
                   "electricity"},
        CreateCase{"LocalSpot", [](CatalogData* d) { d->providers[0].offers_spot = true; },
                   "provider local: spot: a local provider has no spot market"},
        CreateCase{"NegativeRamPrice", [](CatalogData* d) { d->upgrades->ram_usd_per_gib = -1; },
                   "upgrades: ram_usd_per_gib: must not be negative, got -1"},
        CreateCase{"KitsWithoutRamPrice",
                   [](CatalogData* d) { d->upgrades->ram_usd_per_gib = 0; },
                   "upgrades: ram_usd_per_gib: must be more than 0 when ram_kits are listed"},
        CreateCase{"ZeroKit", [](CatalogData* d) { d->upgrades->ram_kit_bytes[0] = 0; },
                   "upgrades: ram_kits[0]: must be more than 0, got 0"},
        CreateCase{"KitsNotAscending",
                   [](CatalogData* d) { d->upgrades->ram_kit_bytes = {128LL << 30, 64LL << 30}; },
                   "upgrades: ram_kits[1]: must be larger than the kit before it (list kits "
                   "ascending)"},
        CreateCase{"NoGpuSlot", [](CatalogData* d) { d->upgrades->max_gpus = 0; },
                   "upgrades: max_gpus: must be between 1 and 16, got 0"},
        CreateCase{"NoReference", [](CatalogData* d) { d->reference_gpu.clear(); },
                   "reference_gpu: missing"},
        CreateCase{"UnknownReference", [](CatalogData* d) { d->reference_gpu = "v100"; },
                   "reference_gpu: unknown GPU \"v100\""},
        CreateCase{"ReferenceNotOne", [](CatalogData* d) { d->reference_gpu = "h100"; },
                   "reference_gpu: h100-80gb has relative_throughput 2; the reference must "
                   "have 1.0"}),
    [](const ::testing::TestParamInfo<CreateCase>& info) { return info.param.name; });

}  // namespace
}  // namespace sched::cost
