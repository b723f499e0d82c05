#include "server/core/ledger.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/job_spec_validation.h"

namespace sched {

double LedgerEntry::Cost() const { return CostWithin(start, end); }

double LedgerEntry::CostWithin(absl::Time from, absl::Time to) const {
  const absl::Time a = std::max(start, from);
  const absl::Time b = std::min(end, to);
  if (b <= a) return 0;
  if (!price_schedule.empty()) return cost::CostOver(price_schedule, price_per_hour, a, b - a);
  return price_per_hour * absl::ToDoubleHours(b - a);
}

CostReport GroupCosts(const std::vector<LedgerEntry>& entries, absl::Time since, absl::Time until,
                      CostGroup group, const std::string& project) {
  CostReport report;
  report.since = since;
  report.until = until;
  std::map<std::string, CostLine> lines;
  for (const LedgerEntry& e : entries) {
    if (!project.empty() && e.project != project) continue;
    const absl::Time a = std::max(e.start, since);
    const absl::Time b = std::min(e.end, until);
    if (b <= a) continue;
    const std::string& key = group == CostGroup::kProject    ? e.project
                             : group == CostGroup::kProvider ? e.provider
                             : group == CostGroup::kJob      ? e.job_id
                                                             : e.node;
    CostLine& line = lines[key];
    line.key = key;
    line.dollars += e.CostWithin(since, until);
    line.hours += absl::ToDoubleHours(b - a);
    line.leases++;
  }
  for (auto& [key, line] : lines) {
    report.total_dollars += line.dollars;
    report.lines.push_back(std::move(line));
  }
  std::stable_sort(report.lines.begin(), report.lines.end(),
                   [](const CostLine& x, const CostLine& y) { return x.dollars > y.dollars; });
  return report;
}

absl::Status ValidateBudget(const Budget& budget) {
  if (!IsValidName(budget.project)) {
    return absl::InvalidArgumentError(
        absl::StrCat("project: must be 1-63 characters of letters, digits, '.', '_' or '-', got \"",
                     budget.project, "\""));
  }
  if (!std::isfinite(budget.monthly_limit) || budget.monthly_limit < 0 ||
      budget.monthly_limit > kMaxCostDollars) {
    return absl::InvalidArgumentError(absl::StrCat("monthly_limit: must be between 0 and ",
                                                   kMaxCostDollars, " dollars, got ",
                                                   budget.monthly_limit));
  }
  for (size_t i = 0; i < budget.alert_percents.size(); ++i) {
    const int p = budget.alert_percents[i];
    if (p < 1 || p > 1000 || (i > 0 && p <= budget.alert_percents[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("alert_percents: must rise, each in 1..1000, got [",
                       absl::StrJoin(budget.alert_percents, ", "), "]"));
    }
  }
  return absl::OkStatus();
}

absl::Time MonthStart(absl::Time t) {
  const absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  return absl::FromCivil(absl::CivilMonth(cs), absl::UTCTimeZone());
}

}  // namespace sched
