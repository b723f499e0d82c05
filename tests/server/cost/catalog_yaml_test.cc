#include "server/cost/catalog_yaml.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::cost {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;

const char kShipped[] = SCHED_SOURCE_DIR "/deploy/catalog/catalog.yaml";

constexpr char kSmall[] = R"(
as_of: 2026-11
reference_gpu: a100-80gb
gpus:
  - key: a100-80gb
    nvml_names: ["NVIDIA A100-SXM4-80GB"]
    aliases: [a100]
    memory: 80GiB
    relative_throughput: 1.0
    power_watts: 400
  - key: rtx3080
    nvml_names: ["NVIDIA GeForce RTX 3080"]
    aliases: [3080]
    memory: 10240MiB
    relative_throughput: 0.3
    power_watts: 320
    street_price_usd: 400
providers:
  - name: local
    local: true
    electricity_usd_per_kwh: 0.17
  - name: aws
    provisioning: 3m
    spot: {discount: 0.6, preemptions_per_hour: 0.02, notice: 120s, on_preempt: terminate}
    prices:
      - {gpu: a100, on_demand: [3.5, 6.0]}
      - {gpu: rtx3080, on_demand: 1.0, spot: [0.2, 0.3]}
upgrades:
  ram_usd_per_gib: 3.5
  ram_kits: [32GiB, 64GiB]
  max_gpus: 2
)";

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

TEST(CatalogYamlTest, ShippedCatalogLoadsWithEveryRequiredGpuAndProvider) {
  absl::StatusOr<Catalog> c = LoadCatalog(kShipped);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->as_of(), "2026-11");
  EXPECT_EQ(c->reference_gpu().key, "a100-80gb");
  for (const char* gpu : {"NVIDIA GeForce RTX 3080", "rtx3090", "4080 super", "4090", "5090",
                          "a100-40gb", "a100", "NVIDIA H100 80GB HBM3", "h100", "l4", "a10g",
                          "Tesla T4", "l40s"}) {
    EXPECT_NE(c->FindGpu(gpu), nullptr) << gpu;
  }
  for (const char* p : {"local", "runpod", "vastai", "thundercompute", "aws", "gcp", "azure"}) {
    EXPECT_NE(c->FindProvider(p), nullptr) << p;
  }
  EXPECT_EQ(c->FindGpu("3080")->memory_bytes, 10240LL << 20);
  // The seed document's A100 80GB table.
  EXPECT_DOUBLE_EQ(c->Price("runpod", "a100", false)->min_usd_per_hour, 1.19);
  EXPECT_DOUBLE_EQ(c->Price("vastai", "a100", false)->max_usd_per_hour, 3.69);
  EXPECT_DOUBLE_EQ(c->Price("thundercompute", "a100", false)->min_usd_per_hour, 1.00);
  for (const char* p : {"aws", "gcp", "azure"}) {
    EXPECT_DOUBLE_EQ(c->Price(p, "a100", false)->min_usd_per_hour, 3.50) << p;
    EXPECT_DOUBLE_EQ(c->Price(p, "a100", false)->max_usd_per_hour, 6.00) << p;
  }
  EXPECT_EQ(c->FindProvider("aws")->preemption_notice, absl::Seconds(120));
  EXPECT_EQ(c->FindProvider("gcp")->preemption_notice, absl::Seconds(30));
  EXPECT_EQ(c->FindProvider("runpod")->preemption_notice, absl::Seconds(5));
  EXPECT_EQ(c->FindProvider("vastai")->preemption_action, PreemptionAction::kPause);
  EXPECT_FALSE(c->FindProvider("thundercompute")->offers_spot);
  // Upgrades: RAM kits people buy, priced; two cards in a workstation.
  EXPECT_GT(c->upgrades().ram_usd_per_gib, 1.0);
  EXPECT_LT(c->upgrades().ram_usd_per_gib, 10.0);
  EXPECT_EQ(c->upgrades().ram_kit_bytes,
            (std::vector<int64_t>{32LL << 30, 64LL << 30, 128LL << 30, 256LL << 30}));
  EXPECT_EQ(c->upgrades().max_gpus, 2);
  // The cards advice proposes are sold; the AWS-only A10G is not.
  for (const char* gpu : {"rtx3090", "rtx4090", "rtx5090"}) {
    EXPECT_GT(c->FindGpu(gpu)->street_price_usd, 0) << gpu;
  }
  EXPECT_EQ(c->FindGpu("a10g")->street_price_usd, 0);
}

TEST(CatalogYamlTest, ShippedThroughputAndMemoryAreOrderedSensibly) {
  absl::StatusOr<Catalog> c = LoadCatalog(kShipped);
  ASSERT_THAT(c, IsOk());
  const char* slowest_first[] = {"t4",      "l4",        "rtx3080",   "rtx3090", "rtx4080s",
                                 "rtx4090", "rtx5090",   "a100-40gb", "a100-80gb", "h100-80gb"};
  for (size_t i = 1; i < std::size(slowest_first); ++i) {
    EXPECT_LT(c->FindGpu(slowest_first[i - 1])->relative_throughput,
              c->FindGpu(slowest_first[i])->relative_throughput)
        << slowest_first[i - 1] << " vs " << slowest_first[i];
  }
  EXPECT_LT(c->FindGpu("3080")->memory_bytes, 10LL * 1024 * 1024 * 1024 + 1);
  EXPECT_GT(c->FindGpu("h100")->memory_bytes, 79LL * 1024 * 1024 * 1024);
  for (const GpuModel& g : c->gpus()) {
    absl::StatusOr<PriceRange> local = c->Price("local", g.key, false);
    EXPECT_THAT(local, StatusIs(absl::StatusCode::kNotFound)) << g.key;  // local has no rent
  }
}

TEST(CatalogYamlTest, ParsesEveryField) {
  absl::StatusOr<CatalogData> d = ParseCatalogYaml(kSmall, "small.yaml");
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->gpus.size(), 2u);
  EXPECT_EQ(d->gpus[0].memory_bytes, 80LL << 30);
  EXPECT_EQ(d->gpus[0].aliases, std::vector<std::string>{"a100"});
  EXPECT_EQ(d->gpus[0].street_price_usd, 0);
  EXPECT_EQ(d->gpus[1].power_watts, 320);
  ASSERT_EQ(d->providers.size(), 2u);
  EXPECT_TRUE(d->providers[0].local);
  EXPECT_FALSE(d->providers[0].offers_spot);
  const Provider& aws = d->providers[1];
  EXPECT_EQ(aws.provisioning_time, absl::Minutes(3));
  EXPECT_TRUE(aws.offers_spot);
  EXPECT_EQ(aws.spot_discount, 0.6);
  EXPECT_EQ(aws.preemption_notice, absl::Seconds(120));
  EXPECT_EQ(aws.prices[1].on_demand.min_usd_per_hour, 1.0);
  EXPECT_EQ(aws.prices[1].on_demand.max_usd_per_hour, 1.0);
  ASSERT_TRUE(aws.prices[1].spot.has_value());
  EXPECT_EQ(aws.prices[1].spot->max_usd_per_hour, 0.3);
  EXPECT_FALSE(aws.prices[0].spot.has_value());
  ASSERT_TRUE(d->upgrades.has_value());
  EXPECT_EQ(d->upgrades->ram_usd_per_gib, 3.5);
  EXPECT_EQ(d->upgrades->ram_kit_bytes, (std::vector<int64_t>{32LL << 30, 64LL << 30}));
  EXPECT_EQ(d->upgrades->max_gpus, 2);
}

TEST(CatalogYamlTest, UpgradesSectionIsOptionalAndItsFieldsToo) {
  absl::StatusOr<CatalogData> d = ParseCatalogYaml("upgrades: {max_gpus: 4}\n", "over.yaml");
  ASSERT_THAT(d, IsOk());
  ASSERT_TRUE(d->upgrades.has_value());
  EXPECT_EQ(d->upgrades->max_gpus, 4);
  EXPECT_TRUE(d->upgrades->ram_kit_bytes.empty());
  d = ParseCatalogYaml("as_of: 2026-12\n", "over.yaml");
  ASSERT_THAT(d, IsOk());
  EXPECT_FALSE(d->upgrades.has_value());
}

TEST(CatalogYamlTest, OverrideReplacesTheUpgradesSection) {
  const std::string over = WriteTemp("ram.yaml", R"(
upgrades:
  ram_usd_per_gib: 2.0
  ram_kits: [96GiB, 192GiB]
)");
  absl::StatusOr<Catalog> c = LoadCatalog(kShipped, {over});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->upgrades().ram_usd_per_gib, 2.0);
  EXPECT_EQ(c->upgrades().ram_kit_bytes, (std::vector<int64_t>{96LL << 30, 192LL << 30}));
  EXPECT_EQ(c->upgrades().max_gpus, 1);  // left out of the replacing section: the default
}

TEST(CatalogYamlTest, OverrideFileReplacesAndAdds) {
  const std::string base = WriteTemp("base.yaml", kSmall);
  const std::string over = WriteTemp("over.yaml", R"(
gpus:
  - key: rtx3080
    nvml_names: ["NVIDIA GeForce RTX 3080"]
    memory: 10GiB
    relative_throughput: 0.32
    power_watts: 300
  - key: rtx4090
    nvml_names: ["NVIDIA GeForce RTX 4090"]
    aliases: [4090]
    memory: 24GiB
    relative_throughput: 0.65
    power_watts: 450
providers:
  - name: local
    local: true
    electricity_usd_per_kwh: 0.32
)");
  absl::StatusOr<Catalog> c = LoadCatalog(base, {over});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->as_of(), "2026-11");
  EXPECT_EQ(c->FindGpu("rtx3080")->relative_throughput, 0.32);
  EXPECT_EQ(c->FindGpu("3080"), nullptr);  // the replacing entry has no aliases
  EXPECT_EQ(c->FindGpu("4090")->power_watts, 450);
  EXPECT_EQ(c->FindProvider("local")->electricity_usd_per_kwh, 0.32);
  EXPECT_DOUBLE_EQ(c->Price("aws", "rtx3080", true)->min_usd_per_hour, 0.2);
}

TEST(CatalogYamlTest, OverrideOfTheShippedCatalog) {
  const std::string over = WriteTemp("tariff.yaml", R"(
as_of: 2026-12
providers:
  - name: runpod
    prices:
      - {gpu: a100, on_demand: [0.99, 1.49]}
)");
  absl::StatusOr<Catalog> c = LoadCatalog(kShipped, {over});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->as_of(), "2026-12");
  EXPECT_DOUBLE_EQ(c->Price("runpod", "a100", false)->min_usd_per_hour, 0.99);
  EXPECT_THAT(c->Price("runpod", "a100", true), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(c->Price("runpod", "4090", false), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_NE(c->FindGpu("l40s"), nullptr);
}

TEST(CatalogYamlTest, ErrorOfTheMergedWholeNamesEveryFile) {
  const std::string base = WriteTemp("base2.yaml", kSmall);
  const std::string over = WriteTemp("bad_ref.yaml", "reference_gpu: rtx3080\n");
  EXPECT_THAT(LoadCatalog(base, {over}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(absl::StrCat(base, " + ", over,
                                       ": reference_gpu: rtx3080 has relative_throughput 0.3; "
                                       "the reference must have 1.0"))));
}

TEST(CatalogYamlTest, EmptyOverrideChangesNothingEmptyBaseFails) {
  const std::string empty = WriteTemp("empty.yaml", "# nothing to override yet\n");
  absl::StatusOr<Catalog> c = LoadCatalog(kShipped, {empty});
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->gpus().size(), LoadCatalog(kShipped)->gpus().size());
  EXPECT_THAT(LoadCatalog(empty),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(absl::StrCat(empty, ": as_of: missing: say when the figures are from"))));
}

TEST(CatalogYamlTest, MissingFile) {
  EXPECT_THAT(ReadCatalogFile("/nonexistent/catalog.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("/nonexistent/catalog.yaml: cannot open the catalog file")));
}

TEST(CatalogYamlTest, DocumentShapeErrors) {
  EXPECT_THAT(ParseCatalogYaml("gpus: [a, b\n", "catalog.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("catalog.yaml:")));
  EXPECT_THAT(ParseCatalogYaml("- a\n", "catalog.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("catalog.yaml: document: expected a mapping, got a list")));
  EXPECT_THAT(ParseCatalogYaml("gpus: 3\n", "catalog.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("catalog.yaml: gpus: expected a list, got \"3\"")));
  EXPECT_THAT(ParseCatalogYaml("providers: [x]\n", "catalog.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("catalog.yaml: providers[0]: expected a mapping, got \"x\"")));
}

struct YamlCase {
  const char* name;
  const char* from;  // replaced in kSmall by `to`
  const char* to;
  const char* message;
};

class CatalogYamlErrorTest : public ::testing::TestWithParam<YamlCase> {};

TEST_P(CatalogYamlErrorTest, NamesFileKeyPathAndReason) {
  const std::string text = absl::StrReplaceAll(kSmall, {{GetParam().from, GetParam().to}});
  ASSERT_NE(text, kSmall) << "the case changes nothing";
  EXPECT_THAT(ParseCatalogYaml(text, "catalog.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(absl::StrCat("catalog.yaml: ", GetParam().message))));
}

INSTANTIATE_TEST_SUITE_P(
    All, CatalogYamlErrorTest,
    ::testing::Values(
        YamlCase{"UnknownTopKey", "as_of:", "asof:",
                 "asof: unknown key (known: as_of, reference_gpu, gpus, providers, upgrades)"},
        YamlCase{"TypoInUpgrades", "max_gpus: 2", "max_gpu: 2",
                 "upgrades.max_gpu: unknown key (known: ram_usd_per_gib, ram_kits, max_gpus)"},
        YamlCase{"KitNotSize", "ram_kits: [32GiB, 64GiB]", "ram_kits: [32GiB, big]",
                 "upgrades.ram_kits[1]: expected a size like \"24GiB\", got \"big\""},
        YamlCase{"KitsNotList", "ram_kits: [32GiB, 64GiB]", "ram_kits: 64GiB",
                 "upgrades.ram_kits: expected a list of sizes, got \"64GiB\""},
        YamlCase{"KitsDescending", "ram_kits: [32GiB, 64GiB]", "ram_kits: [64GiB, 32GiB]",
                 "upgrades.ram_kits[1]: must be larger than the kit before it (list kits "
                 "ascending)"},
        YamlCase{"FractionalGpus", "max_gpus: 2", "max_gpus: 1.5",
                 "upgrades.max_gpus: expected a whole number, got \"1.5\""},
        YamlCase{"NoGpus", "max_gpus: 2", "max_gpus: 0",
                 "upgrades.max_gpus: must be between 1 and 16, got 0"},
        YamlCase{"KitsWithoutPrice", "ram_usd_per_gib: 3.5", "ram_usd_per_gib: 0",
                 "upgrades.ram_usd_per_gib: must be more than 0 when ram_kits are listed"},
        YamlCase{"BadSize", "memory: 10240MiB", "memory: lots",
                 "gpus[1].memory: expected a size like \"24GiB\", got \"lots\""},
        YamlCase{"NegativeSize", "memory: 10240MiB", "memory: -1GB",
                 "gpus[1].memory: expected a size like \"24GiB\", got \"-1GB\""},
        YamlCase{"ZeroMemory", "memory: 10240MiB", "memory: 0GB",
                 "gpus[1].memory: must be more than 0, got 0"},
        YamlCase{"MissingKey", "  - key: rtx3080\n", "  - aliases: []\n",
                 "gpus[1].key: missing"},
        YamlCase{"TypoInGpu", "power_watts: 320", "power_wats: 320",
                 "gpus[1].power_wats: unknown key (known: key, nvml_names, aliases, memory, "
                 "relative_throughput, power_watts, street_price_usd)"},
        YamlCase{"ThroughputNotNumber", "relative_throughput: 0.3", "relative_throughput: fast",
                 "gpus[1].relative_throughput: expected a number, got \"fast\""},
        YamlCase{"ThroughputZero", "relative_throughput: 0.3", "relative_throughput: 0",
                 "gpus[1].relative_throughput: must be more than 0, got 0"},
        YamlCase{"FractionalWatts", "power_watts: 320", "power_watts: 320.5",
                 "gpus[1].power_watts: expected a whole number of watts, got \"320.5\""},
        YamlCase{"NamesNotList", "nvml_names: [\"NVIDIA GeForce RTX 3080\"]",
                 "nvml_names: NVIDIA GeForce RTX 3080",
                 "gpus[1].nvml_names: expected a list of strings, got \"NVIDIA GeForce RTX "
                 "3080\""},
        YamlCase{"AliasNotString", "aliases: [3080]", "aliases: [[3080]]",
                 "gpus[1].aliases[0]: expected a string, got a list"},
        YamlCase{"NegativeStreetPrice", "street_price_usd: 400", "street_price_usd: -400",
                 "gpus[1].street_price_usd: must not be negative, got -400"},
        YamlCase{"LocalNotBool", "local: true", "local: yes please",
                 "providers[0].local: expected true or false, got \"yes please\""},
        YamlCase{"BadDuration", "provisioning: 3m", "provisioning: soon",
                 "providers[1].provisioning: expected a duration like \"90s\" or \"5m\", got "
                 "\"soon\""},
        YamlCase{"DiscountAboveOne", "discount: 0.6", "discount: 60",
                 "providers[1].spot.discount: must be between 0 and 1, got 60"},
        YamlCase{"RateAboveOne", "preemptions_per_hour: 0.02", "preemptions_per_hour: 2",
                 "providers[1].spot.preemptions_per_hour: must be between 0 and 1, got 2"},
        YamlCase{"MissingNotice", "notice: 120s, ", "",
                 "providers[1].spot.notice: missing"},
        YamlCase{"BadAction", "on_preempt: terminate", "on_preempt: explode",
                 "providers[1].spot.on_preempt: expected terminate or pause, got \"explode\""},
        YamlCase{"MinAboveMax", "on_demand: [3.5, 6.0]", "on_demand: [6.0, 3.5]",
                 "providers[1].prices[0].on_demand: min 6 is above max 3.5"},
        YamlCase{"PriceNotNumber", "on_demand: [3.5, 6.0]", "on_demand: [3.5, lots]",
                 "providers[1].prices[0].on_demand[1]: expected a number, got \"lots\""},
        YamlCase{"PriceTriple", "on_demand: [3.5, 6.0]", "on_demand: [1, 2, 3]",
                 "providers[1].prices[0].on_demand: expected a price or a range [min, max] in "
                 "dollars per hour, got a list"},
        YamlCase{"MissingOnDemand", "{gpu: a100, on_demand: [3.5, 6.0]}", "{gpu: a100}",
                 "providers[1].prices[0].on_demand: missing"},
        YamlCase{"PricesNotList", "    prices:\n      - {gpu: a100, on_demand: [3.5, 6.0]}\n"
                                  "      - {gpu: rtx3080, on_demand: 1.0, spot: [0.2, 0.3]}",
                 "    prices: cheap",
                 "providers[1].prices: expected a list, got \"cheap\""},
        YamlCase{"CloudElectricity", "    provisioning: 3m", "    provisioning: 3m\n"
                                                             "    electricity_usd_per_kwh: 0.2",
                 "providers[1].electricity_usd_per_kwh: only a local provider pays for "
                 "electricity"},
        YamlCase{"SpotOnLocal", "    electricity_usd_per_kwh: 0.17",
                 "    electricity_usd_per_kwh: 0.17\n"
                 "    spot: {discount: 0.1, preemptions_per_hour: 0, notice: 0s}",
                 "providers[0].spot: a local provider has no spot market"}),
    [](const ::testing::TestParamInfo<YamlCase>& info) { return info.param.name; });

}  // namespace
}  // namespace sched::cost
