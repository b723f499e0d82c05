#include "server/service/cost_advice.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sched {
namespace {

bool IsLocalProvider(const std::string& provider) {
  return provider.empty() || absl::AsciiStrToLower(provider) == "local";
}

int64_t TotalGpuMemory(const Node& node) {
  int64_t total = 0;
  for (const GpuDevice& g : node.record.caps.gpus) total += g.memory_bytes;
  return total;
}

const Node* FindNode(const std::vector<Node>& nodes, const std::string& name) {
  for (const Node& n : nodes) {
    if (n.record.name == name) return &n;
  }
  return nullptr;
}

}  // namespace

bool IsLocalNode(const NodeCapabilities& caps) {
  return IsLocalProvider(caps.provider) || caps.local_price.has_value();
}

absl::StatusOr<const Node*> PickLocalNode(const std::vector<Node>& nodes, const std::string& name) {
  if (!name.empty()) {
    const Node* node = FindNode(nodes, name);
    if (node == nullptr) return absl::NotFoundError(absl::StrCat("node ", name, " not found"));
    if (!IsLocalNode(node->record.caps)) {
      return absl::InvalidArgumentError(
          absl::StrCat("node ", name, " is not a local machine (provider ",
                       node->record.caps.provider, "): advice is for machines you own"));
    }
    return node;
  }
  const Node* best = nullptr;
  for (const Node& n : nodes) {
    if (!IsLocalNode(n.record.caps)) continue;
    if (best == nullptr || TotalGpuMemory(n) > TotalGpuMemory(*best) ||
        (TotalGpuMemory(n) == TotalGpuMemory(*best) &&
         n.record.caps.memory_bytes > best->record.caps.memory_bytes)) {
      best = &n;
    }
  }
  if (best == nullptr) {
    return absl::FailedPreconditionError(
        "no local machine: upgrade advice needs a node you own (an agent whose provider is "
        "\"local\" or not set, or that has a local price)");
  }
  return best;
}

cost::LocalMachine LocalMachineOf(const Node& node) {
  const NodeCapabilities& caps = node.record.caps;
  cost::LocalMachine m;
  m.name = node.record.name;
  m.gpu_count = static_cast<int32_t>(caps.gpus.size());
  for (const GpuDevice& g : caps.gpus) {
    if (m.gpu_model.empty()) m.gpu_model = g.model;
    m.gpu_memory_bytes =
        m.gpu_memory_bytes == 0 ? g.memory_bytes : std::min(m.gpu_memory_bytes, g.memory_bytes);
  }
  m.memory_bytes = caps.memory_bytes;
  m.cpu_millis = caps.cpu_millis;
  if (caps.local_price.has_value()) {
    m.power_watts = caps.local_price->power_watts;
    m.electricity_usd_per_kwh = caps.local_price->electricity_dollars_per_kwh;
  }
  return m;
}

AdviceWindow GatherAdviceInput(const std::vector<LedgerEntry>& ledger,
                               const absl::flat_hash_map<std::string, Job>& jobs,
                               const std::vector<Node>& nodes, const Node& machine,
                               absl::Time since, absl::Time until) {
  AdviceWindow w;
  w.input.machine = LocalMachineOf(machine);
  w.input.window_days = absl::ToDoubleHours(until - since) / 24;
  for (const LedgerEntry& e : ledger) {
    const Node* node = FindNode(nodes, e.node);
    if (IsLocalProvider(e.provider) || (node != nullptr && IsLocalNode(node->record.caps))) {
      continue;
    }
    const absl::Time from = std::max(e.start, since);
    const absl::Time to = std::min(e.end, until);
    if (to <= from) continue;
    const double dollars = e.CostWithin(since, until);
    w.cloud_usd += dollars;
    auto job = jobs.find(e.job_id);
    if (job == jobs.end() || job->second.decision.local_blocker != LocalBlocker::kTooSmall) {
      continue;
    }
    const Resources& r = job->second.spec.resources;
    cost::CloudRun run;
    run.job_id = e.job_id;
    run.job_name = job->second.spec.name;
    run.project = e.project;
    run.dollars = dollars;
    run.hours = absl::ToDoubleHours(to - from);
    if (r.gpus > 0) {
      const bool has_gpus = node != nullptr && !node->record.caps.gpus.empty();
      run.ran_on = {has_gpus ? node->record.caps.gpus.front().model : std::string(),
                    static_cast<int32_t>(r.gpus)};
    }
    run.needs.gpus = static_cast<int32_t>(r.gpus);
    run.needs.gpu_memory_bytes = r.gpu_memory_bytes;
    run.needs.gpu_models = r.gpu_models;
    run.needs.memory_bytes = r.memory_bytes;
    run.needs.cpu_millis = r.cpu_millis;
    w.input.runs.push_back(std::move(run));
  }
  return w;
}

}  // namespace sched
