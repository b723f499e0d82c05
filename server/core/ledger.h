#pragma once

// What work cost: the ledger of intervals during which jobs held priced nodes, and per-project
// budgets. Plain data; the Scheduler meters and stores them.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/cost/price_schedule.h"

namespace sched {

// One lease of a job on a node with a price: from its assignment to the end of the lease (the
// agent's final report, or the lease running out). Written durably in the same batch as the
// change that ended the lease, so the ledger survives kill -9 with the jobs.
struct LedgerEntry {
  std::string job_id;
  uint64_t epoch = 0;
  uint32_t attempt = 0;
  std::string project;
  std::string node;
  std::string provider;
  double price_per_hour = 0;  // dollars, as the node advertised it when the job was assigned
  // The node's prices by time of day then (empty: price_per_hour all day).
  cost::PriceSchedule price_schedule;
  absl::Time start = absl::InfinitePast();
  absl::Time end = absl::InfinitePast();

  // Dollars for [start, end]; 0 when the clock went backwards.
  double Cost() const;
  // Dollars for the part of [start, end] inside [from, to].
  double CostWithin(absl::Time from, absl::Time to) const;
};

// A project's monthly budget (calendar months, UTC).
struct Budget {
  std::string project;
  double monthly_limit = 0;                  // dollars
  std::vector<int> alert_percents = {50, 80, 100};  // ascending, 1..1000
  bool hard_cap = true;  // placements that would pass the limit are not made
  absl::Time update_time = absl::InfinitePast();
};

enum class CostGroup { kProject, kProvider, kJob, kNode };

struct CostLine {
  std::string key;  // the project, provider, job id or node name
  double dollars = 0;
  double hours = 0;  // node-hours inside the window
  uint32_t leases = 0;
};

struct CostReport {
  absl::Time since;
  absl::Time until;
  std::vector<CostLine> lines;  // most expensive first, then by key
  double total_dollars = 0;
};

// Groups the part of each entry inside [since, until]; only `project`'s when it is not empty.
// Entries with nothing inside the window are left out.
CostReport GroupCosts(const std::vector<LedgerEntry>& entries, absl::Time since, absl::Time until,
                      CostGroup group, const std::string& project);

// INVALID_ARGUMENT naming the field: project, monthly_limit (finite, >= 0), alert_percents.
absl::Status ValidateBudget(const Budget& budget);

// The first instant of the calendar month (UTC) that holds `t`.
absl::Time MonthStart(absl::Time t);

}  // namespace sched
