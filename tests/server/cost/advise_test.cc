#include "server/cost/advise.h"

#include <cmath>

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
using ::testing::ElementsAre;
using ::testing::Eq;

constexpr int64_t kGiB = int64_t{1} << 30;

// The small catalog with an RTX 4090 ($2000, 0.65, 450 W) added and the H100 not sold to
// individuals, so the cards for sale are the RTX 3080 ($400), the A100 ($12000) and the 4090.
// Upgrades: RAM at $4/GiB in 64 and 128 GiB kits; two GPUs at most.
Catalog AdviceCatalog() {
  CatalogData d = SmallCatalogData();
  d.gpus.push_back(
      {"rtx4090", {"NVIDIA GeForce RTX 4090"}, {"4090"}, 24564LL << 20, 0.65, 450, 2000});
  d.gpus[2].street_price_usd = 0;  // h100-80gb
  return Catalog::Create(d).value();
}

// An RTX 3080 workstation: 32 GiB, 8 CPUs, 500 W under load (180 W besides the card), $0.20/kWh.
LocalMachine Workstation() {
  LocalMachine m;
  m.name = "ws1";
  m.gpu_model = "NVIDIA GeForce RTX 3080";
  m.gpu_count = 1;
  m.gpu_memory_bytes = 10240LL << 20;
  m.memory_bytes = 32 * kGiB;
  m.cpu_millis = 8000;
  m.power_watts = 500;
  m.electricity_usd_per_kwh = 0.20;
  return m;
}

CloudRun CloudRunOf(const std::string& job, double dollars, double hours, GpuAllocation ran_on,
             RunNeeds needs) {
  CloudRun r;
  r.job_id = job;
  r.job_name = "name-" + job;
  r.project = "llm";
  r.dollars = dollars;
  r.hours = hours;
  r.ran_on = std::move(ran_on);
  r.needs = std::move(needs);
  return r;
}

RunNeeds Gpus(int32_t n, int64_t gib_each, int64_t ram_gib = 0) {
  RunNeeds needs;
  needs.gpus = n;
  needs.gpu_memory_bytes = gib_each * kGiB;
  needs.memory_bytes = ram_gib * kGiB;
  return needs;
}

// Fifteen days of history (a month is twice that):
//   a  x2: 1 GPU of 20 GiB, 1.3 h on an A100, $2.60 each
//   b    : 2 GPUs of 8 GiB, 1 h on 2 A100s, $3.00
//   c    : CPU only, 100 GiB RAM and 4 CPUs, 5 h, $2.00
//   d    : 1 GPU of 20 GiB and 48 GiB RAM, 0.65 h on an A100, $1.30
//   e    : fits the workstation as it is (8 GiB GPU, 16 GiB RAM), $1.00
//   f    : 4 GPUs, more than a workstation takes, $10.00
AdviceInput History() {
  AdviceInput in;
  in.machine = Workstation();
  in.window_days = 15;
  RunNeeds cpu_only;
  cpu_only.memory_bytes = 100 * kGiB;
  cpu_only.cpu_millis = 4000;
  in.runs = {
      CloudRunOf("a", 2.60, 1.3, {"a100", 1}, Gpus(1, 20)),
      CloudRunOf("a", 2.60, 1.3, {"a100", 1}, Gpus(1, 20)),
      CloudRunOf("b", 3.00, 1.0, {"a100", 2}, Gpus(2, 8)),
      CloudRunOf("c", 2.00, 5.0, {}, cpu_only),
      CloudRunOf("d", 1.30, 0.65, {"a100", 1}, Gpus(1, 20, 48)),
      CloudRunOf("e", 1.00, 1.0, {"a100", 1}, Gpus(1, 8, 16)),
      CloudRunOf("f", 10.00, 2.0, {"a100", 4}, Gpus(4, 40)),
  };
  return in;
}

const UpgradePath* Find(const Advice& advice, const std::string& description) {
  for (const UpgradePath& p : advice.paths) {
    if (p.description == description) return &p;
  }
  return nullptr;
}

std::vector<std::string> Descriptions(const Advice& advice) {
  std::vector<std::string> out;
  for (const UpgradePath& p : advice.paths) out.push_back(p.description);
  return out;
}

TEST(AdviseTest, SortsByPaybackAndLeavesOutWhatBringsNothingOrIsBeaten) {
  absl::StatusOr<Advice> advice = AdviseUpgrades(AdviceCatalog(), History());
  ASSERT_THAT(advice, IsOk());
  EXPECT_EQ(advice->too_small_runs, 7);
  EXPECT_DOUBLE_EQ(advice->too_small_usd, 22.50);
  EXPECT_EQ(advice->fits_now_runs, 1);  // e
  EXPECT_DOUBLE_EQ(advice->fits_now_usd, 1.00);
  EXPECT_EQ(advice->no_path_runs, 1);  // f
  EXPECT_DOUBLE_EQ(advice->no_path_usd, 10.00);
  // Paybacks in months: 400 / 4.9067, 512 / 3.64, 2256 / 11.74, 2000 / 9.392, 4256 / 17.0754,
  // 4000 / 14.7274. RAM to 64 GiB alone brings nothing home (c needs 100 GiB, d a bigger GPU);
  // the A100 paths bring home what the 4090 ones do, dearer and later; 4090 + 128 GiB brings
  // home nothing that 4090 + 64 GiB or 128 GiB alone does not.
  EXPECT_THAT(Descriptions(*advice),
              ElementsAre("second RTX 3080", "RAM 32 GiB -> 128 GiB",
                          "RTX 4090 in place of RTX 3080 + RAM 32 GiB -> 64 GiB",
                          "RTX 4090 in place of RTX 3080",
                          "2x RTX 4090 in place of RTX 3080 + RAM 32 GiB -> 64 GiB",
                          "2x RTX 4090 in place of RTX 3080"));
  EXPECT_EQ(advice->dominated_paths, 4);  // 1 and 2 A100s, each alone and with 64 GiB
}

TEST(AdviseTest, ReplacingTheCardScalesTheRuntimeAndPricesTheEnergy) {
  Advice advice = AdviseUpgrades(AdviceCatalog(), History()).value();
  const UpgradePath* p = Find(advice, "RTX 4090 in place of RTX 3080");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->kind, UpgradeKind::kReplaceGpus);
  EXPECT_EQ(p->gpu_model, "rtx4090");
  EXPECT_EQ(p->gpu_count, 1);
  EXPECT_EQ(p->gpu_memory_bytes, 24564LL << 20);
  EXPECT_EQ(p->memory_bytes, 32 * kGiB);
  EXPECT_DOUBLE_EQ(p->price_usd, 2000);
  EXPECT_EQ(p->runs, 2);
  EXPECT_THAT(p->job_ids, ElementsAre("a"));
  EXPECT_DOUBLE_EQ(p->cloud_usd, 5.20);
  // Each run: 1.3 h x 1.0 / 0.65 = 2 h at 180 + 450 W = 1.26 kWh x $0.20 = $0.252.
  EXPECT_THAT(p->local_usd, DoubleNear(0.504, 1e-9));
  EXPECT_THAT(p->saving_usd, DoubleNear(4.696, 1e-9));
  EXPECT_THAT(p->saving_usd_per_month, DoubleNear(9.392, 1e-9));
  EXPECT_THAT(p->payback_months, DoubleNear(2000 / 9.392, 1e-9));
  EXPECT_EQ(p->runs_not_scaled, 0);
}

TEST(AdviseTest, TwoCardsBringHomeTheTwoGpuJob) {
  Advice advice = AdviseUpgrades(AdviceCatalog(), History()).value();
  const UpgradePath* p = Find(advice, "2x RTX 4090 in place of RTX 3080");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->gpu_count, 2);
  EXPECT_DOUBLE_EQ(p->price_usd, 4000);
  EXPECT_THAT(p->job_ids, ElementsAre("a", "b"));
  EXPECT_DOUBLE_EQ(p->cloud_usd, 8.20);
  // b: 1 h on 2 A100s (1.8) -> 2 4090s (1.17): 1/0.65 h at 180 + 900 W, $0.20/kWh.
  const double b_local = 1 / 0.65 * 1.080 * 0.20;
  EXPECT_THAT(p->local_usd, DoubleNear(0.504 + b_local, 1e-9));
  EXPECT_THAT(p->payback_months, DoubleNear(4000 / ((8.20 - 0.504 - b_local) * 2), 1e-9));

  const UpgradePath* second = Find(advice, "second RTX 3080");
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->kind, UpgradeKind::kAddGpus);
  EXPECT_EQ(second->gpu_model, "rtx3080");
  EXPECT_EQ(second->gpu_count, 2);
  EXPECT_EQ(second->gpu_memory_bytes, 10240LL << 20);
  EXPECT_DOUBLE_EQ(second->price_usd, 400);
  EXPECT_THAT(second->job_ids, ElementsAre("b"));
  // 1 h on 2 A100s -> 2 RTX 3080s: 1 / 0.3 h at 180 + 640 W = 2.7333 kWh x $0.20.
  EXPECT_THAT(second->local_usd, DoubleNear(1 / 0.3 * 0.820 * 0.20, 1e-9));
  EXPECT_THAT(second->saving_usd_per_month, DoubleNear((3.00 - 0.546666667) * 2, 1e-6));
  EXPECT_THAT(second->payback_months, DoubleNear(81.5217, 1e-3));
}

TEST(AdviseTest, RamKitAndCombination) {
  Advice advice = AdviseUpgrades(AdviceCatalog(), History()).value();
  const UpgradePath* ram = Find(advice, "RAM 32 GiB -> 128 GiB");
  ASSERT_NE(ram, nullptr);
  EXPECT_EQ(ram->kind, UpgradeKind::kRam);
  EXPECT_EQ(ram->memory_bytes, 128 * kGiB);
  EXPECT_EQ(ram->gpu_model, "rtx3080");   // unchanged
  EXPECT_DOUBLE_EQ(ram->price_usd, 512);  // the whole kit at $4/GiB
  EXPECT_THAT(ram->job_ids, ElementsAre("c"));
  // CPU only: 5 h as measured, at the 180 W the machine draws besides its card.
  EXPECT_THAT(ram->local_usd, DoubleNear(5 * 0.180 * 0.20, 1e-9));
  EXPECT_EQ(ram->runs_not_scaled, 1);
  EXPECT_THAT(ram->payback_months, DoubleNear(512 / 3.64, 1e-9));

  const UpgradePath* both = Find(advice, "RTX 4090 in place of RTX 3080 + RAM 32 GiB -> 64 GiB");
  ASSERT_NE(both, nullptr);
  EXPECT_EQ(both->kind, UpgradeKind::kGpusAndRam);
  EXPECT_EQ(both->memory_bytes, 64 * kGiB);
  EXPECT_DOUBLE_EQ(both->price_usd, 2256);
  EXPECT_THAT(both->job_ids, ElementsAre("a", "d"));
  EXPECT_DOUBLE_EQ(both->cloud_usd, 6.50);
  // d: 0.65 h on an A100 -> 1 h on the 4090 at 630 W.
  EXPECT_THAT(both->local_usd, DoubleNear(0.504 + 0.126, 1e-9));
  EXPECT_THAT(both->payback_months, DoubleNear(2256 / 11.74, 1e-9));
}

TEST(AdviseTest, KeepDominatedListsTheBeatenPathsToo) {
  AdviseOptions options;
  options.keep_dominated = true;
  Advice advice = AdviseUpgrades(AdviceCatalog(), History(), options).value();
  EXPECT_EQ(advice.dominated_paths, 0);
  EXPECT_EQ(advice.paths.size(), 10u);
  const UpgradePath* a100 = Find(advice, "A100-SXM4-80GB in place of RTX 3080");
  ASSERT_NE(a100, nullptr);
  // 1.3 h as on the cloud's A100, at 180 + 400 W.
  EXPECT_THAT(a100->local_usd, DoubleNear(2 * 1.3 * 0.580 * 0.20, 1e-9));
  EXPECT_THAT(a100->payback_months, DoubleNear(12000 / ((5.20 - 0.3016) * 2), 1e-9));
  EXPECT_EQ(Find(advice, "RTX 4090 in place of RTX 3080 + RAM 32 GiB -> 128 GiB"), nullptr);
  for (const UpgradePath& p : advice.paths) {
    EXPECT_EQ(p.description.find("H100"), std::string::npos) << "not sold: " << p.description;
  }
}

TEST(AdviseTest, PathsThatSaveNothingComeLast) {
  // No GPU yet; the machine's draw unknown, so only the card's counts, at the catalog's $0.17.
  AdviceInput in;
  in.machine.name = "box";
  in.machine.memory_bytes = 64 * kGiB;
  in.machine.cpu_millis = 16000;
  in.window_days = 30;
  // One hour on a rented 4090 for $0.05: at home the 4090 burns 0.45 kWh = $0.0765; an A100
  // runs it in 0.65 h at 400 W = $0.0442.
  in.runs = {CloudRunOf("cheap", 0.05, 1.0, {"rtx4090", 1}, Gpus(1, 20))};
  absl::StatusOr<Advice> advice = AdviseUpgrades(AdviceCatalog(), in);
  ASSERT_THAT(advice, IsOk());
  ASSERT_THAT(Descriptions(*advice), ElementsAre("add A100-SXM4-80GB", "add RTX 4090"));
  EXPECT_THAT(advice->paths[0].saving_usd, DoubleNear(0.05 - 0.0442, 1e-9));
  EXPECT_THAT(advice->paths[0].payback_months, DoubleNear(12000 / 0.0058, 1e-6));
  EXPECT_THAT(advice->paths[1].saving_usd, DoubleNear(0.05 - 0.0765, 1e-9));
  EXPECT_TRUE(std::isinf(advice->paths[1].payback_months));
  EXPECT_EQ(advice->dominated_paths, 2);  // two cards of each: the same run, dearer
}

TEST(AdviseTest, WantedModelsAndGpusTheCatalogCannotCompare) {
  AdviceInput in = History();
  RunNeeds wants_4090 = Gpus(1, 16);
  wants_4090.gpu_models = {"4090"};
  in.runs = {CloudRunOf("w", 4.00, 2.0, {"NVIDIA B200", 1}, wants_4090)};
  Advice advice = AdviseUpgrades(AdviceCatalog(), in).value();
  ASSERT_THAT(Descriptions(advice), ElementsAre("RTX 4090 in place of RTX 3080"));
  const UpgradePath& p = advice.paths[0];
  EXPECT_EQ(p.runs_not_scaled, 1);  // a B200 is not in the catalog: 2 h as measured
  EXPECT_THAT(p.local_usd, DoubleNear(2 * 0.630 * 0.20, 1e-9));
}

TEST(AdviseTest, CatalogWithoutUpgradesProposesCardsOnly) {
  CatalogData d = SmallCatalogData();
  d.upgrades.reset();
  Catalog catalog = Catalog::Create(d).value();
  AdviseOptions options;
  options.keep_dominated = true;
  Advice advice = AdviseUpgrades(catalog, History(), options).value();
  // One card at most, no RAM: the A100 brings home a's runs; nothing else fits.
  EXPECT_THAT(Descriptions(advice), ElementsAre("A100-SXM4-80GB in place of RTX 3080",
                                                "H100 80GB HBM3 in place of RTX 3080"));
  EXPECT_EQ(advice.no_path_runs, 4);  // b, c, d, f
}

TEST(AdviseTest, NoRunsNoPaths) {
  AdviceInput in = History();
  in.runs.clear();
  Advice advice = AdviseUpgrades(AdviceCatalog(), in).value();
  EXPECT_EQ(advice.too_small_runs, 0);
  EXPECT_TRUE(advice.paths.empty());
}

TEST(AdviseTest, BadInputNamesTheField) {
  AdviceInput in = History();
  in.window_days = 0;
  EXPECT_THAT(AdviseUpgrades(AdviceCatalog(), in),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("window_days: must be more than 0, got 0")));
  in = History();
  in.runs[1].dollars = -1;
  EXPECT_THAT(AdviseUpgrades(AdviceCatalog(), in),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("runs[1].dollars: must not be negative, got -1")));
  in = History();
  in.machine.gpu_count = -1;
  EXPECT_THAT(AdviseUpgrades(AdviceCatalog(), in),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("machine.gpu_count: must not be negative, got -1")));
  AdviseOptions options;
  options.runtime.multi_gpu_efficiency = 1.5;
  EXPECT_THAT(AdviseUpgrades(AdviceCatalog(), History(), options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("multi_gpu_efficiency: must be in (0, 1], got 1.5")));
}

TEST(AdviseTest, KindNames) {
  EXPECT_EQ(UpgradeKindName(UpgradeKind::kReplaceGpus), "replace-gpus");
  EXPECT_EQ(UpgradeKindName(UpgradeKind::kAddGpus), "add-gpus");
  EXPECT_EQ(UpgradeKindName(UpgradeKind::kRam), "ram");
  EXPECT_EQ(UpgradeKindName(UpgradeKind::kGpusAndRam), "gpus-and-ram");
}

}  // namespace
}  // namespace sched::cost
