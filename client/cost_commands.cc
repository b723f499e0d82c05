#include "client/cost_commands.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/table.h"
#include "client/units.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

std::string Dollars(double d) { return absl::StrFormat("$%.2f", d); }

std::string Alerts(const google::protobuf::RepeatedField<int32_t>& percents) {
  if (percents.empty()) return "<none>";
  return absl::StrCat(absl::StrJoin(percents, ","), "%");
}

absl::StatusOr<sched::v1::CostGroup> ParseGroup(const std::string& by) {
  if (by == "project") return sched::v1::COST_GROUP_PROJECT;
  if (by == "provider") return sched::v1::COST_GROUP_PROVIDER;
  if (by == "job") return sched::v1::COST_GROUP_JOB;
  if (by == "node") return sched::v1::COST_GROUP_NODE;
  return absl::InvalidArgumentError(
      absl::StrCat("--by: unknown grouping \"", by, "\" (expected project, provider, job or node)"));
}

std::string FormatTime(const google::protobuf::Timestamp& ts) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(ts.seconds()),
                          absl::UTCTimeZone());
}

std::string Runs(uint32_t runs) { return runs == 1 ? "1 run" : absl::StrCat(runs, " runs"); }

std::string Payback(const sched::v1::UpgradeAdvice& u) {
  if (!u.pays_back()) return "never";
  const double months = u.payback_months();
  if (months < 24) return absl::StrFormat("%.1f months", months);
  if (months < 1200) return absl::StrFormat("%.1f years", months / 12);
  return "over 100 years";
}

std::string JobsBroughtHome(const sched::v1::UpgradeAdvice& u) {
  const int jobs = u.job_ids_size();
  if (static_cast<uint32_t>(jobs) == u.runs()) return absl::StrCat(jobs);
  return absl::StrCat(jobs, " (", Runs(u.runs()), ")");
}

std::string Machine(const sched::v1::CostAdvice& a) {
  std::string gpus = "no GPU";
  if (a.gpus() > 0) {
    gpus = absl::StrCat(a.gpus(), "x ", a.gpu_model(), " (", FormatGpuMemory(a.gpu_memory_bytes()),
                        ")");
  }
  return absl::StrCat(a.node(), ": ", gpus, ", ", FormatBytes(a.memory_bytes()), " RAM");
}

}  // namespace

void PrintCostAdvice(const sched::v1::CostAdvice& a, std::ostream& out) {
  const double percent =
      a.cloud_dollars() > 0 ? 100 * a.too_small_dollars() / a.cloud_dollars() : 0;
  out << "Last " << a.days() << " days (" << FormatTime(a.since()) << " to "
      << FormatTime(a.until()) << "): cloud spend " << Dollars(a.cloud_dollars()) << ", "
      << Dollars(a.too_small_dollars()) << absl::StrFormat(" (%.0f%%)", percent)
      << " of it because no local machine was big enough (" << Runs(a.too_small_runs())
      << ")\n";
  out << "Upgrading " << Machine(a) << "; prices as of " << a.catalog_as_of() << "\n";
  if (a.too_small_runs() == 0) {
    out << "Nothing to bring home: no job went to the cloud for want of a bigger local "
           "machine.\n";
    return;
  }
  if (a.upgrades().empty()) {
    out << "No upgrade in the catalog would have brought any of those runs home.\n";
  } else {
    Table table(
        {"UPGRADE", "PRICE", "JOBS BROUGHT HOME", "CLOUD SPEND", "SAVED/MONTH", "PAYBACK"});
    for (const sched::v1::UpgradeAdvice& u : a.upgrades()) {
      const double saved = u.saved_per_month();
      table.AddRow({u.description(), absl::StrFormat("$%.0f", u.price()), JobsBroughtHome(u),
                    Dollars(u.cloud_dollars()),
                    saved < 0 ? absl::StrCat("-", Dollars(-saved)) : Dollars(saved),
                    Payback(u)});
    }
    table.Print(out);
  }
  if (a.fits_now_runs() > 0) {
    out << Dollars(a.fits_now_dollars()) << " (" << Runs(a.fits_now_runs()) << ") would fit "
        << a.node() << " as it is now.\n";
  }
  if (a.no_upgrade_runs() > 0) {
    out << Dollars(a.no_upgrade_dollars()) << " (" << Runs(a.no_upgrade_runs())
        << ") no upgrade brings home: more GPUs, GPU memory, RAM or CPUs than a workstation "
           "takes.\n";
  }
  if (a.upgrades_not_shown() > 0) {
    out << a.upgrades_not_shown()
        << " more upgrades are beaten by one above: no more jobs brought home, no cheaper, no "
           "sooner payback (--all shows them).\n";
  }
  out << "SAVED/MONTH: cloud spend less electricity at home, per 30 days; runtimes scaled by "
         "catalog throughput. Estimates: docs/cost-model.md.\n";
}

absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now) {
  if (std::optional<absl::Duration> ago = ParsePositiveDuration(text)) return now - *ago;
  absl::Time at;
  std::string err;
  if (absl::ParseTime("%Y-%m-%d", text, absl::UTCTimeZone(), &at, &err) ||
      absl::ParseTime(absl::RFC3339_full, text, &at, &err)) {
    return at;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--since: expected 7d, 12h, 2026-11-01 or an RFC 3339 time, got \"", text, "\""));
}

absl::Status RunBudgetSet(const BudgetSetArgs& args, CommandContext& ctx) {
  sched::v1::SetBudgetRequest request;
  request.set_project(args.project);
  request.set_monthly_limit(args.monthly_limit);
  for (int p : args.alert_percents) request.add_alert_percents(p);
  request.set_soft(args.soft);
  SCHED_ASSIGN_OR_RETURN(sched::v1::Budget b, ctx.client.SetBudget(request));
  ctx.out << "budget/" << b.project() << " set: " << Dollars(b.monthly_limit()) << " a month";
  if (!b.alert_percents().empty()) {
    ctx.out << ", alerts at " << absl::StrJoin(b.alert_percents(), "%, ") << "%";
  }
  ctx.out << ", " << (b.hard_cap() ? "hard cap" : "soft (alerts only)") << "; spent this month "
          << Dollars(b.spent_this_month()) << "\n";
  return absl::OkStatus();
}

absl::Status RunBudgetGet(const BudgetGetArgs& args, CommandContext& ctx) {
  sched::v1::ListBudgetsResponse budgets;
  if (args.project.empty()) {
    SCHED_ASSIGN_OR_RETURN(budgets, ctx.client.ListBudgets());
  } else {
    SCHED_ASSIGN_OR_RETURN(*budgets.add_budgets(), ctx.client.GetBudget(args.project));
    if (!IsTable(args.output)) {
      return PrintDocument(budgets.budgets(0), args.output, false, ctx.out);
    }
  }
  if (!IsTable(args.output)) return PrintDocument(budgets, args.output, false, ctx.out);
  if (budgets.budgets().empty()) {
    ctx.out << "No budgets. Set one with: schedctl budget set PROJECT --monthly DOLLARS\n";
    return absl::OkStatus();
  }
  Table table({"PROJECT", "MONTHLY", "SPENT", "USED", "ALERTS", "CROSSED", "CAP"});
  for (const sched::v1::Budget& b : budgets.budgets()) {
    const double percent =
        b.monthly_limit() > 0 ? 100 * b.spent_this_month() / b.monthly_limit() : 0;
    // The highest alert threshold this month's spend has reached.
    std::string crossed = "-";
    for (int threshold : b.alert_percents()) {
      if (b.monthly_limit() > 0 && percent >= threshold) crossed = absl::StrCat(threshold, "%");
    }
    table.AddRow({b.project(), Dollars(b.monthly_limit()), Dollars(b.spent_this_month()),
                  b.monthly_limit() > 0 ? absl::StrFormat("%.0f%%", percent) : "-",
                  Alerts(b.alert_percents()), crossed, b.hard_cap() ? "hard" : "soft"});
  }
  table.Print(ctx.out);
  return absl::OkStatus();
}

absl::Status RunCostReport(const CostReportArgs& args, CommandContext& ctx) {
  sched::v1::GetCostReportRequest request;
  SCHED_ASSIGN_OR_RETURN(sched::v1::CostGroup group, ParseGroup(args.by));
  request.set_group_by(group);
  request.set_project(args.project);
  if (!args.since.empty()) {
    SCHED_ASSIGN_OR_RETURN(absl::Time since, ParseSince(args.since, ctx.clock.Now()));
    request.mutable_since()->set_seconds(absl::ToUnixSeconds(since));
  }
  SCHED_ASSIGN_OR_RETURN(sched::v1::CostReport report, ctx.client.GetCostReport(request));
  if (!IsTable(args.output)) return PrintDocument(report, args.output, false, ctx.out);
  ctx.out << "Cost from " << FormatTime(report.since()) << " to " << FormatTime(report.until())
          << (args.project.empty() ? "" : absl::StrCat(", project ", args.project)) << "\n";
  std::string key = args.by;
  for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  Table table({key, "COST", "NODE-HOURS", "LEASES"});
  for (const sched::v1::CostLine& line : report.lines()) {
    table.AddRow({line.key(), Dollars(line.dollars()), absl::StrFormat("%.2f", line.hours()),
                  absl::StrCat(line.leases())});
  }
  table.AddRow({"TOTAL", Dollars(report.total_dollars()), "", ""});
  table.Print(ctx.out);
  return absl::OkStatus();
}


absl::Status RunCostAdvice(const CostAdviceArgs& args, CommandContext& ctx) {
  sched::v1::GetCostAdviceRequest request;
  request.set_days(args.days);
  request.set_node(args.node);
  request.set_all(args.all);
  SCHED_ASSIGN_OR_RETURN(sched::v1::CostAdvice advice, ctx.client.GetCostAdvice(request));
  if (!IsTable(args.output)) return PrintDocument(advice, args.output, false, ctx.out);
  PrintCostAdvice(advice, ctx.out);
  return absl::OkStatus();
}

}  // namespace sched::client
