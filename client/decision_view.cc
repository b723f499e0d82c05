#include "client/decision_view.h"

#include <optional>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/resource_view.h"
#include "client/table.h"
#include "client/units.h"

namespace sched::client {
namespace {

// "now", "+2h30m": how long after the decision.
std::string Offset(const google::protobuf::Timestamp& t, absl::Time decided) {
  const std::optional<absl::Time> at = FromTimestamp(t);
  if (!at) return "-";
  const absl::Duration d = *at - decided;
  if (d < absl::Seconds(1)) return "now";
  return absl::StrCat("+", absl::FormatDuration(absl::Trunc(
                               d, d < absl::Minutes(1) ? absl::Seconds(1) : absl::Minutes(1))));
}

std::string Where(const sched::v1::DecisionOption& o) {
  if (o.local()) return "local";
  std::string where = o.provider().empty() ? "cloud" : o.provider();
  if (o.spot()) absl::StrAppend(&where, " spot");
  return where;
}

std::string Runtime(const sched::v1::DecisionOption& o) {
  if (o.runtime_seconds() <= 0) return "-";
  return absl::FormatDuration(absl::Trunc(absl::Seconds(o.runtime_seconds()), absl::Minutes(1)));
}

}  // namespace

void PrintDecisionTable(const sched::v1::Decision& decision, int indent, std::ostream& out) {
  const absl::Time decided = FromTimestamp(decision.decide_time()).value_or(absl::UnixEpoch());
  Table table({"NODE", "WHERE", "START", "FINISH", "RUNTIME", "PRICE/H", "COST", "VERDICT",
               "WHY"});
  for (const sched::v1::DecisionOption& o : decision.options()) {
    const bool figures = o.verdict() != "too-small" && o.verdict() != "policy";
    table.AddRow({o.node(), Where(o), figures ? Offset(o.start_time(), decided) : "-",
                  figures ? Offset(o.finish_time(), decided) : "-", figures ? Runtime(o) : "-",
                  FormatPrice(o.price_per_hour()),
                  figures && o.has_start_time() ? absl::StrFormat("$%.2f", o.cost()) : "-",
                  o.verdict(), o.reason()});
  }
  std::ostringstream text;
  table.Print(text);
  const std::string pad(indent, ' ');
  for (absl::string_view line : absl::StrSplit(text.str(), '\n', absl::SkipEmpty())) {
    out << pad << line << "\n";
  }
}

void PrintEstimate(const sched::v1::Decision& decision, std::ostream& out) {
  absl::string_view summary = decision.summary();
  if (decision.placed()) {
    out << "Would start now " << summary << "\n";
  } else if (absl::ConsumePrefix(&summary, "waiting for ")) {
    out << "Would wait for " << summary << "\n";
  } else {
    out << "Would wait: " << summary << "\n";
  }
  if (decision.options().empty()) {
    out << "No schedulable node.\n";
    return;
  }
  out << "\n";
  PrintDecisionTable(decision, 0, out);
  if (decision.nodes_not_shown() > 0) {
    out << "(" << decision.nodes_not_shown() << " more nodes not shown)\n";
  }
}

}  // namespace sched::client
