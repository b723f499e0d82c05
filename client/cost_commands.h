#pragma once

// schedctl's money commands: budget set|get and cost report.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/commands.h"

namespace sched::client {

struct BudgetSetArgs {
  std::string project;
  double monthly_limit = 0;  // dollars
  std::vector<int> alert_percents;  // empty: the server's default (50, 80, 100)
  bool soft = false;                // alert only, never hold work back
};
// Prints "budget/<project> set: $50.00 a month, alerts at 50%, 80%, 100%, hard cap".
absl::Status RunBudgetSet(const BudgetSetArgs& args, CommandContext& ctx);

struct BudgetGetArgs {
  std::string project;  // empty: every budget
  OutputFormat output = OutputFormat::kTable;
};
// A table: PROJECT, MONTHLY, SPENT (this month), USED, ALERTS, CROSSED (the highest alert
// threshold reached), CAP.
absl::Status RunBudgetGet(const BudgetGetArgs& args, CommandContext& ctx);

struct CostReportArgs {
  std::string by = "project";  // project | provider | job | node
  std::string since;           // "7d", "12h", "2026-11-01", an RFC 3339 time; empty: this month
  std::string project;
  OutputFormat output = OutputFormat::kTable;
};
// The window, a table of the groups (most expensive first) and the total.
absl::Status RunCostReport(const CostReportArgs& args, CommandContext& ctx);

struct CostAdviceArgs {
  uint32_t days = 30;
  std::string node;  // empty: the server picks the local node with the most GPU memory
  bool all = false;  // also upgrades another one beats
  OutputFormat output = OutputFormat::kTable;
};
// A header with the window's cloud spend and the part of it that went to the cloud because no
// local machine could hold the job, then PrintCostAdvice's table.
absl::Status RunCostAdvice(const CostAdviceArgs& args, CommandContext& ctx);

// `cost advise` for people: the machine and window, the spend lines, a table (UPGRADE, PRICE,
// JOBS BROUGHT HOME, CLOUD SPEND, SAVED/MONTH, PAYBACK) in the server's order, and notes on what
// the table leaves out.
void PrintCostAdvice(const sched::v1::CostAdvice& advice, std::ostream& out);

// "7d", "36h", "90m" before `now`, "2026-11-01" (UTC midnight) or an RFC 3339 time.
absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now);

}  // namespace sched::client
