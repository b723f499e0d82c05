#include "client/describe.h"

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/decision_view.h"
#include "client/resource_view.h"
#include "client/table.h"
#include "client/units.h"
#include "server/cost/price_schedule.h"

namespace sched::client {
namespace {

// Lines of `Key:   value`, values aligned among the keys of the same indent level; nested
// sections and free text (scripts, tables) indented two spaces a level.
class DescribeWriter {
 public:
  void Field(std::string key, std::string value, int level = 0) {
    lines_.push_back({level, std::move(key), std::move(value), true});
  }
  void Section(std::string title, int level = 0) {
    lines_.push_back({level, std::move(title), "", true});
  }
  void Text(absl::string_view text, int level) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      lines_.push_back({level, std::string(line), "", false});
    }
  }
  // `key=value` lines under a section; "<none>" on the section line when there are none.
  void Map(std::string title, const std::map<std::string, std::string>& entries, int level = 0) {
    if (entries.empty()) {
      Field(std::move(title), "<none>", level);
      return;
    }
    Section(std::move(title), level);
    for (const auto& [k, v] : entries) Text(absl::StrCat(k, "=", v), level + 1);
  }

  void Print(std::ostream& out) const {
    std::map<int, size_t> widths;
    for (const Line& l : lines_) {
      if (l.is_field && !l.value.empty()) widths[l.level] = std::max(widths[l.level], l.key.size());
    }
    for (const Line& l : lines_) {
      std::string line(2 * l.level, ' ');
      if (!l.is_field) {
        line += l.key;
      } else if (l.value.empty()) {
        absl::StrAppend(&line, l.key, ":");
      } else {
        const std::string indent(line.size() + widths[l.level] + 3, ' ');
        absl::StrAppend(&line, l.key, ":", std::string(widths[l.level] - l.key.size() + 2, ' '),
                        absl::StrJoin(absl::StrSplit(l.value, '\n'), "\n" + indent));
      }
      out << line << '\n';
    }
  }

 private:
  struct Line {
    int level;
    std::string key;  // the text itself for a text line
    std::string value;
    bool is_field;
  };
  std::vector<Line> lines_;
};

std::string TimeField(const google::protobuf::Timestamp& ts, absl::Time now) {
  const std::optional<absl::Time> t = FromTimestamp(ts);
  if (!t) return "<none>";
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *t, absl::UTCTimeZone()), " (",
                      FormatAge(now - *t), " ago)");
}

std::string PlacementName(sched::v1::PlacementPolicy p) {
  switch (p) {
    case sched::v1::PLACEMENT_POLICY_LOCAL_ONLY:
      return "local-only";
    case sched::v1::PLACEMENT_POLICY_CHEAPEST:
      return "cheapest";
    case sched::v1::PLACEMENT_POLICY_CLOUD_ONLY:
      return "cloud-only";
    default:
      return "prefer-local";
  }
}

std::string SpotName(sched::v1::SpotPolicy p) {
  switch (p) {
    case sched::v1::SPOT_POLICY_SPOT:
      return "spot";
    case sched::v1::SPOT_POLICY_ON_DEMAND:
      return "on-demand";
    default:
      return "auto";
  }
}

// "7B qlora int4, batch 4, sequence 2048, gradient checkpointing, rank 64"
std::string ModelField(const sched::v1::JobSpec& spec) {
  if (!spec.has_model() || spec.model().parameters() == 0) return "<none>";
  const sched::v1::ModelDescription& m = spec.model();
  const double p = static_cast<double>(m.parameters());
  std::string out = p >= 1e9   ? absl::StrFormat("%gB", p / 1e9)
                    : p >= 1e6 ? absl::StrFormat("%gM", p / 1e6)
                               : absl::StrCat(m.parameters());
  absl::StrAppend(&out, " ", m.method().empty() ? "inference" : m.method());
  if (!m.precision().empty()) absl::StrAppend(&out, " ", m.precision());
  if (!m.optimizer().empty()) absl::StrAppend(&out, ", ", m.optimizer());
  if (m.batch_size() != 0) absl::StrAppend(&out, ", batch ", m.batch_size());
  if (m.sequence_length() != 0) absl::StrAppend(&out, ", sequence ", m.sequence_length());
  if (m.gradient_checkpointing()) absl::StrAppend(&out, ", gradient checkpointing");
  if (m.lora_rank() != 0) absl::StrAppend(&out, ", rank ", m.lora_rank());
  return out;
}

std::string RuntimeField(const sched::v1::JobSpec& spec) {
  if (!spec.has_runtime() || spec.runtime().seconds() <= 0) return "<not given>";
  return absl::StrCat(
      absl::FormatDuration(absl::Seconds(spec.runtime().seconds())), " on ",
      spec.runtime().gpu_model().empty() ? "the reference GPU" : spec.runtime().gpu_model());
}

std::map<std::string, std::string> SortedLabels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  return {labels.begin(), labels.end()};
}

void Script(DescribeWriter& w, std::string title, const std::string& script) {
  if (script.empty()) {
    w.Field(std::move(title), "<none>");
    return;
  }
  w.Section(std::move(title));
  absl::string_view text = script;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  w.Text(text, 1);
}

// `text`, with " (advertised)" when the agent was given the field rather than detecting it.
std::string Advertised(const sched::v1::Capabilities& caps, absl::string_view field,
                       std::string text) {
  if (IsAdvertised(caps, field)) text += " (advertised)";
  return text;
}

// How a machine the user owns comes to its price per hour.
void LocalPriceSection(DescribeWriter& w, const sched::v1::Capabilities::LocalPrice& p) {
  w.Section("Local Price");
  w.Field("Energy",
          p.power_watts() > 0
              ? absl::StrFormat("$%.4f/h (%g W at $%g/kWh)", p.energy_dollars_per_hour(),
                                p.power_watts(), p.electricity_dollars_per_kwh())
              : "<none>",
          1);
  w.Field("Hardware",
          p.amortize_months() > 0 ? absl::StrFormat("$%.4f/h ($%g over %g months of 730 h)",
                                                    p.amortization_dollars_per_hour(),
                                                    p.hardware_cost_dollars(), p.amortize_months())
                                  : "<none>",
          1);
}

// "00:00-07:00 $0.12/h, 17:00-21:00 $0.45/h (UTC+01:00); $0.30/h otherwise".
std::string PriceScheduleField(const sched::v1::Capabilities& caps) {
  sched::cost::PriceSchedule schedule;
  schedule.utc_offset_minutes = caps.price_schedule().utc_offset_minutes();
  for (const sched::v1::PriceWindow& w : caps.price_schedule().windows()) {
    schedule.windows.push_back({static_cast<int32_t>(w.start_minute()),
                                static_cast<int32_t>(w.end_minute()), w.dollars_per_hour()});
  }
  return sched::cost::DescribePriceSchedule(schedule, caps.price_per_hour());
}

}  // namespace

// Every lease of the job: where it ran, for how long, how it ended, what it resumed from.
std::string AttemptsTable(const sched::v1::Job& job, absl::Time now) {
  Table table({"#", "NODE", "PROVIDER", "STARTED", "RAN", "ENDED", "RESUMED FROM"});
  for (const sched::v1::JobAttempt& a : job.attempts()) {
    const std::optional<absl::Time> start = FromTimestamp(a.start_time());
    const std::optional<absl::Time> end = FromTimestamp(a.end_time());
    std::string provider = a.provider().empty() ? "<none>" : a.provider();
    if (a.spot()) absl::StrAppend(&provider, " (spot)");
    table.AddRow({absl::StrCat(a.attempt()), a.node(), provider,
                  start ? absl::StrCat(FormatAge(now - *start), " ago") : "<unknown>",
                  start ? FormatAge((end ? *end : now) - *start) : "<unknown>",
                  end ? a.end_reason() : "<running>",
                  a.resumed_from().empty()
                      ? "<start>"
                      : absl::StrCat(a.resumed_from(), " (#", a.resumed_from_seq(), ")")});
  }
  std::ostringstream text;
  table.Print(text);
  std::string out = text.str();
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void DescribeJob(const sched::v1::Job& job, absl::Time now, std::ostream& out,
                 const std::optional<sched::v1::CostLine>& spent) {
  const sched::v1::JobSpec& spec = job.spec();
  const sched::v1::Resources& r = spec.resources();
  DescribeWriter w;
  w.Field("ID", job.id());
  w.Field("Name", OrNone(spec.name()));
  w.Field("Project", OrNone(spec.project()));
  std::string state = ShortJobState(job.state());
  if (job.cancel_requested()) absl::StrAppend(&state, " (cancel requested)");
  w.Field("State", state);
  w.Field("Message", OrNone(job.message()));
  w.Field("Attempt", job.preemptions() > 0
                         ? absl::StrCat(job.attempt(), " (", job.preemptions(),
                                        " lost to preemption, not counted as failures)")
                         : absl::StrCat(job.attempt()));
  if (spec.has_retry() && spec.retry().max_restarts() > 0) {
    const sched::v1::RetryPolicy& retry = spec.retry();
    w.Field("Restarts",
            absl::StrCat(job.restarts(), " of ", retry.max_restarts(), " (on ",
                         retry.exit_codes().empty()
                             ? std::string("any failure")
                             : absl::StrCat("exit code ", absl::StrJoin(retry.exit_codes(), ", ")),
                         "; backoff ", absl::FormatDuration(absl::Seconds(retry.backoff_seconds())),
                         " doubling up to ",
                         absl::FormatDuration(absl::Seconds(retry.max_backoff_seconds())), ")"));
  }
  if (job.state() == sched::v1::JOB_STATE_PENDING && job.has_hold_until() &&
      absl::FromUnixSeconds(job.hold_until().seconds()) > now) {
    w.Field("Held Until", TimeFromNow(job.hold_until(), now));
  }
  if (spec.after_size() > 0) {
    std::vector<std::string> after;
    for (const sched::v1::Dependency& d : spec.after()) {
      after.push_back(absl::StrCat("job/", d.job_id(), " (", d.when().empty() ? "success" : d.when(),
                                   ")"));
    }
    w.Field("After", absl::StrJoin(after, ", "));
  }
  w.Field("Epoch", absl::StrCat(job.epoch()));
  w.Field("Node", OrNone(job.node()));
  w.Field("GPU Indexes", FormatIndexes(job.gpu_indexes()));
  w.Field("Exit Code", HasExitCode(job.state()) ? absl::StrCat(job.exit_code()) : "<none>");
  w.Field("Priority", absl::StrCat(spec.priority()));
  w.Field("Request ID", OrNone(job.request_id()));
  w.Field("Created", TimeField(job.create_time(), now));
  w.Field("Started", TimeField(job.start_time(), now));
  w.Field("Finished", TimeField(job.finish_time(), now));
  w.Field("Updated", TimeField(job.update_time(), now));
  w.Map("Labels", SortedLabels(spec.labels()));
  w.Section("Resources");
  w.Field("GPUs", absl::StrCat(r.gpus()), 1);
  w.Field("GPU Memory",
          r.gpu_memory_bytes() <= 0 ? "any"
          : r.gpu_memory_estimated()
              ? absl::StrCat(FormatBytes(r.gpu_memory_bytes()), " (estimated from the model)")
              : FormatBytes(r.gpu_memory_bytes()),
          1);
  w.Field("GPU Models", r.gpu_models().empty() ? "any" : absl::StrJoin(r.gpu_models(), ", "), 1);
  if (r.share_gpu()) w.Field("Share GPU", "yes: packed with other jobs while their memory fits", 1);
  w.Field("CPUs", FormatCpus(r.cpus() > 0 ? r.cpus() : 1.0), 1);
  w.Field("Memory", r.memory_bytes() > 0 ? FormatBytes(r.memory_bytes()) : "<none>", 1);
  w.Section("Cost");
  w.Field("Placement", PlacementName(spec.placement()), 1);
  w.Field("Spot", SpotName(spec.spot()), 1);
  w.Field("Deadline", spec.has_deadline() ? TimeFromNow(spec.deadline(), now) : "<none>", 1);
  w.Field("Max Cost", spec.max_cost() > 0 ? absl::StrFormat("$%.2f", spec.max_cost()) : "<none>",
          1);
  if (spec.max_duration_seconds() > 0) {
    w.Field("Max Duration",
            absl::StrCat(absl::FormatDuration(absl::Seconds(spec.max_duration_seconds())), " (",
                         absl::FormatDuration(absl::Trunc(absl::Seconds(job.run_seconds()),
                                                          absl::Seconds(1))),
                         " used by ended attempts)"),
            1);
  }
  if (spec.has_not_before()) w.Field("Not Before", TimeFromNow(spec.not_before(), now), 1);
  w.Field("Runtime", RuntimeField(spec), 1);
  w.Field("Model", ModelField(spec), 1);
  if (spent.has_value()) {
    w.Field("Spent",
            spent->leases() == 0
                ? "$0.00"
                : absl::StrFormat("$%.2f (%d lease%s, %.2f node-hours)", spent->dollars(),
                                  spent->leases(), spent->leases() == 1 ? "" : "s", spent->hours()),
            1);
  }
  if (job.has_decision()) {
    const sched::v1::Decision& d = job.decision();
    w.Section("Decision");
    w.Field("Decided", TimeField(d.decide_time(), now), 1);
    w.Field("Outcome", d.placed() ? "placed" : "waiting", 1);
    w.Field("Why", d.summary(), 1);
    w.Field("Weighed",
            d.nodes_not_shown() > 0
                ? absl::StrCat(d.nodes_considered(), " (", d.nodes_not_shown(), " not shown)")
                : absl::StrCat(d.nodes_considered()),
            1);
    if (!d.options().empty()) {
      std::ostringstream table;
      PrintDecisionTable(d, 0, table);
      std::string text = table.str();
      text.pop_back();  // the last newline
      w.Section("Options", 1);
      w.Text(text, 2);
    }
  }
  if (job.attempts_size() > 0) {
    w.Section("Attempts");
    w.Text(AttemptsTable(job, now), 1);
  }
  if (spec.env().empty()) {
    w.Field("Env", "<none>");
  } else {
    w.Section("Env");
    for (const auto& var : spec.env()) {
      w.Text(absl::StrCat(var.name(), "=", var.secret() ? "<secret>" : var.value()), 1);
    }
  }
  Script(w, "Setup", spec.setup());
  Script(w, "Run", spec.run());
  w.Print(out);
}

std::string RentalPhaseText(sched::v1::RentalPhase p) {
  return absl::AsciiStrToUpper(absl::StripPrefix(sched::v1::RentalPhase_Name(p), "RENTAL_PHASE_"));
}

// What the autoscaler knows of a node it rented: where from, for whom, what it cost, its life.
void RentalSection(DescribeWriter& w, const sched::v1::Rental& r, absl::Time now) {
  w.Section("Rental");
  w.Field("Provider", r.provider(), 1);
  w.Field("Offer", r.offer_id(), 1);
  w.Field("Instance", OrNone(r.instance_id()), 1);
  w.Field("Owner Project", r.owner_project(), 1);
  w.Field("Phase", RentalPhaseText(r.phase()), 1);
  w.Field("Asked For", TimeField(r.create_time(), now), 1);
  w.Field("Expected Ready", TimeField(r.expected_ready_time(), now), 1);
  w.Field("Joined", TimeField(r.ready_time(), now), 1);
  w.Field("Ended", TimeField(r.end_time(), now), 1);
  w.Field("Idle Since", TimeField(r.idle_since(), now), 1);
  w.Field("Price/h", FormatPrice(r.price_per_hour()), 1);
  w.Field("Cost So Far", absl::StrFormat("$%.2f", r.cost_so_far()), 1);
  w.Field("Message", OrNone(r.message()), 1);
  if (r.events().empty()) return;
  w.Section("Events");
  Table events({"TIME", "PHASE", "MESSAGE"});
  for (const sched::v1::RentalEvent& e : r.events()) {
    const std::optional<absl::Time> t = FromTimestamp(e.time());
    events.AddRow({t ? absl::StrCat(FormatAge(now - *t), " ago") : "-", RentalPhaseText(e.phase()),
                   e.message().empty() ? "-" : e.message()});
  }
  std::ostringstream table;
  events.Print(table);
  std::string text = table.str();
  text.pop_back();  // the last newline
  w.Text(text, 1);
}

void DescribeNode(const sched::v1::Node& node, absl::Time now, std::ostream& out) {
  const sched::v1::Capabilities& caps = node.capabilities();
  DescribeWriter w;
  w.Field("Name", node.name());
  w.Field("State", ShortNodeState(node.state()));
  w.Field("Connected", node.connected() ? "yes" : "no");
  w.Field("Hostname", OrNone(caps.hostname()));
  w.Field("Provider", Advertised(caps, "provider", OrNone(caps.provider())));
  w.Field("Region", OrNone(caps.region()));
  w.Field("Instance Type", OrNone(caps.instance_type()));
  w.Field("Spot", caps.spot() ? "yes" : "no");
  w.Field("Price/h", FormatPrice(caps.price_per_hour()));
  if (caps.price_schedule().windows_size() > 0) {
    w.Field("Price Schedule", PriceScheduleField(caps));
  }
  if (caps.has_local_price()) LocalPriceSection(w, caps.local_price());
  w.Field("Agent Version", OrNone(caps.agent_version()));
  w.Field("GPU Detection", OrNone(caps.gpu_detection()));
  w.Field("Registered", TimeField(node.register_time(), now));
  w.Field("Last Heartbeat", TimeField(node.last_heartbeat_time(), now));
  w.Map("Labels", SortedLabels(caps.labels()));
  w.Section("Capacity");
  w.Field("CPUs", FormatCpus(caps.cpus()), 1);
  w.Field("Memory", FormatBytes(caps.memory_bytes()), 1);
  w.Field("Disk", FormatBytes(caps.disk_bytes()), 1);
  if (caps.gpus().empty()) {
    w.Field("GPUs", "<none>");
  } else {
    w.Section(Advertised(caps, "gpus", "GPUs"));
    Table gpus({"INDEX", "MODEL", "MEMORY", "UUID"});
    for (const auto& gpu : caps.gpus()) {
      gpus.AddRow({absl::StrCat(gpu.index()), gpu.model(), FormatGpuMemory(gpu.memory_bytes()),
                   gpu.uuid().empty() ? "-" : gpu.uuid()});
    }
    std::ostringstream table;
    gpus.Print(table);
    std::string text = table.str();
    text.pop_back();  // the last newline
    w.Text(text, 1);
  }
  w.Section("Allocated");
  w.Field("CPUs", absl::StrCat(FormatCpus(node.allocated_cpus()), " of ", FormatCpus(caps.cpus())),
          1);
  w.Field("Memory",
          absl::StrCat(FormatBytes(node.allocated_memory_bytes()), " of ",
                       FormatBytes(caps.memory_bytes())),
          1);
  w.Field("GPUs",
          absl::StrCat(FormatIndexes(node.allocated_gpu_indexes()), " (",
                       node.allocated_gpu_indexes_size(), " of ", caps.gpus_size(), ")"),
          1);
  w.Field("Running Jobs", absl::StrCat(node.running_jobs()), 1);
  if (node.owner_gpu_indexes_size() > 0) {
    // The owner comes first: no job is placed on these until the agent gives them back.
    w.Field("Owner's GPUs",
            absl::StrCat(FormatIndexes(node.owner_gpu_indexes()), " (", node.owner_detail(), ")"),
            1);
  }
  if (node.has_rental()) RentalSection(w, node.rental(), now);
  w.Print(out);
}

}  // namespace sched::client
