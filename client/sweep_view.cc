#include "client/sweep_view.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/resource_view.h"
#include "client/table.h"

namespace sched::client {
namespace {

std::string Value(double v) { return absl::StrFormat("%.6g", v); }

std::string Parameters(const sched::v1::Job& run) {
  std::vector<std::string> parts;
  for (const auto& [name, value] : std::map<std::string, std::string>(run.parameters().begin(),
                                                                      run.parameters().end())) {
    parts.push_back(absl::StrCat(name, "=", value));
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace

void PrintSweep(const sched::v1::SweepStatus& sweep, std::ostream& out) {
  const std::string& metric = sweep.spec().sweep().metric();
  std::set<std::string> names;
  for (const sched::v1::Job& run : sweep.runs()) {
    for (const auto& [name, value] : run.parameters()) names.insert(name);
  }
  std::vector<std::string> header = {"INDEX", "JOB", "STATE"};
  header.insert(header.end(), names.begin(), names.end());
  header.push_back("STEP");
  header.push_back(metric.empty() ? "METRIC" : metric);
  header.push_back("");
  Table table(header);
  std::map<std::string, int> by_state;
  for (const sched::v1::Job& run : sweep.runs()) {
    const std::string state = ShortJobState(run.state());
    by_state[state]++;
    std::vector<std::string> row = {absl::StrCat(run.array_index()), run.id().substr(0, 8),
                                    state};
    for (const std::string& name : names) {
      auto it = run.parameters().find(name);
      row.push_back(it == run.parameters().end() ? "-" : it->second);
    }
    auto value = metric.empty() ? run.metrics().end() : run.metrics().find(metric);
    const bool reported = !run.metrics().empty();
    row.push_back(reported ? absl::StrCat(run.metric_step()) : "-");
    row.push_back(value == run.metrics().end() ? "-" : Value(value->second));
    row.push_back(static_cast<int>(run.array_index()) == sweep.best_index() ? "best" : "");
    table.AddRow(std::move(row));
  }
  table.Print(out);
  std::vector<std::string> counts;
  for (const auto& [state, n] : by_state) counts.push_back(absl::StrCat(n, " ", state));
  out << "\n"
      << "sweep/" << sweep.id() << ": " << sweep.runs_size() << " runs ("
      << absl::StrJoin(counts, ", ") << ")\n";
  const sched::v1::Job* best = sweep.best_index() >= 0 && sweep.best_index() < sweep.runs_size()
                                   ? &sweep.runs(sweep.best_index())
                                   : nullptr;
  if (best != nullptr && best->metrics().count(metric) > 0) {
    out << "best: run " << best->array_index() << " (" << Parameters(*best) << "), job/"
        << best->id() << ", " << metric << " " << Value(best->metrics().at(metric)) << " at step "
        << best->metric_step() << " ("
        << (sweep.spec().sweep().maximize() ? "higher is better" : "lower is better") << ")\n";
  } else if (!metric.empty()) {
    out << "best: none yet (no run has reported " << metric << ")\n";
  }
}

}  // namespace sched::client
