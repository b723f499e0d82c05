// `schedctl cost advise` for people.
#include <sstream>

#include "client/cost_commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

sched::v1::UpgradeAdvice Upgrade(const std::string& description, double price,
                                 std::vector<std::string> jobs, uint32_t runs, double cloud,
                                 double saved_per_month, double payback_months) {
  sched::v1::UpgradeAdvice u;
  u.set_description(description);
  u.set_price(price);
  for (const std::string& j : jobs) u.add_job_ids(j);
  u.set_runs(runs);
  u.set_cloud_dollars(cloud);
  u.set_saved_per_month(saved_per_month);
  u.set_pays_back(payback_months > 0);
  u.set_payback_months(payback_months);
  return u;
}

// Fifteen days: $25.00 in the cloud, $22.50 of it too big for an RTX 3080 box.
sched::v1::CostAdvice Advice() {
  sched::v1::CostAdvice a;
  a.mutable_since()->set_seconds(1'799'395'200);  // 2027-01-08T08:00:00Z
  a.mutable_until()->set_seconds(1'800'691'200);  // 2027-01-23T08:00:00Z
  a.set_days(15);
  a.set_node("ws1");
  a.set_gpu_model("NVIDIA GeForce RTX 3080");
  a.set_gpus(1);
  a.set_gpu_memory_bytes(10240LL << 20);
  a.set_memory_bytes(32LL << 30);
  a.set_cloud_dollars(25.00);
  a.set_too_small_dollars(22.50);
  a.set_too_small_runs(7);
  a.set_fits_now_dollars(1.00);
  a.set_fits_now_runs(1);
  a.set_no_upgrade_dollars(10.00);
  a.set_no_upgrade_runs(1);
  a.set_catalog_as_of("2026-11");
  *a.add_upgrades() = Upgrade("second RTX 3080", 400, {"b"}, 1, 3.00, 4.906667, 81.5217);
  *a.add_upgrades() = Upgrade("RAM 32 GiB -> 128 GiB", 512, {"c"}, 1, 2.00, 3.64, 140.659);
  *a.add_upgrades() =
      Upgrade("RTX 4090 in place of RTX 3080", 2000, {"a"}, 2, 5.20, 9.392, 212.947);
  *a.add_upgrades() = Upgrade("add RTX 4090", 2000, {"cheap"}, 1, 0.05, -0.0265, 0);
  a.set_upgrades_not_shown(4);
  return a;
}

TEST(PrintCostAdvice, HeaderTableAndNotes) {
  std::ostringstream out;
  PrintCostAdvice(Advice(), out);
  EXPECT_EQ(out.str(),
            "Last 15 days (2027-01-08T08:00:00Z to 2027-01-23T08:00:00Z): cloud spend $25.00, "
            "$22.50 (90%) of it because no local machine was big enough (7 runs)\n"
            "Upgrading ws1: 1x NVIDIA GeForce RTX 3080 (10GB), 32GiB RAM; prices as of 2026-11\n"
            "UPGRADE                         PRICE   JOBS BROUGHT HOME   CLOUD SPEND   "
            "SAVED/MONTH   PAYBACK\n"
            "second RTX 3080                 $400    1                   $3.00         "
            "$4.91         6.8 years\n"
            "RAM 32 GiB -> 128 GiB           $512    1                   $2.00         "
            "$3.64         11.7 years\n"
            "RTX 4090 in place of RTX 3080   $2000   1 (2 runs)          $5.20         "
            "$9.39         17.7 years\n"
            "add RTX 4090                    $2000   1                   $0.05         "
            "-$0.03        never\n"
            "$1.00 (1 run) would fit ws1 as it is now.\n"
            "$10.00 (1 run) no upgrade brings home: more GPUs, GPU memory, RAM or CPUs than a "
            "workstation takes.\n"
            "4 more upgrades are beaten by one above: no more jobs brought home, no cheaper, no "
            "sooner payback (--all shows them).\n"
            "SAVED/MONTH: cloud spend less electricity at home, per 30 days; runtimes scaled by "
            "catalog throughput. Estimates: docs/cost-model.md.\n");
}

TEST(PrintCostAdvice, PaybackInMonthsUnderTwoYearsAndCappedAtACentury) {
  sched::v1::CostAdvice a = Advice();
  a.mutable_upgrades(0)->set_payback_months(3.25);
  a.mutable_upgrades(1)->set_payback_months(1200);
  std::ostringstream out;
  PrintCostAdvice(a, out);
  EXPECT_THAT(out.str(), HasSubstr("$4.91         3.2 months\n"));
  EXPECT_THAT(out.str(), HasSubstr("$3.64         over 100 years\n"));
}

TEST(PrintCostAdvice, NothingTooSmall) {
  sched::v1::CostAdvice a = Advice();
  a.set_too_small_dollars(0);
  a.set_too_small_runs(0);
  a.clear_upgrades();
  a.set_gpus(0);
  std::ostringstream out;
  PrintCostAdvice(a, out);
  EXPECT_THAT(out.str(), HasSubstr("cloud spend $25.00, $0.00 (0%) of it"));
  EXPECT_THAT(out.str(), HasSubstr("Upgrading ws1: no GPU, 32GiB RAM"));
  EXPECT_THAT(out.str(), HasSubstr("Nothing to bring home: no job went to the cloud for want "
                                   "of a bigger local machine.\n"));
  EXPECT_THAT(out.str(), Not(HasSubstr("UPGRADE")));
}

TEST(PrintCostAdvice, NoUpgradeHelps) {
  sched::v1::CostAdvice a = Advice();
  a.clear_upgrades();
  a.set_upgrades_not_shown(0);
  std::ostringstream out;
  PrintCostAdvice(a, out);
  EXPECT_THAT(out.str(),
              HasSubstr("No upgrade in the catalog would have brought any of those runs home.\n"));
  EXPECT_THAT(out.str(), Not(HasSubstr("UPGRADE")));
  EXPECT_THAT(out.str(), Not(HasSubstr("--all")));
}

}  // namespace
}  // namespace sched::client
