#include "server/core/placement.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace sched {
namespace {

// Case-insensitive substring test that allocates nothing: it runs for every GPU of every node a
// GPU job is tried on.
bool ContainsIgnoringCase(absl::string_view text, absl::string_view part) {
  if (part.size() > text.size()) return false;
  for (size_t i = 0; i + part.size() <= text.size(); ++i) {
    if (absl::EqualsIgnoreCase(text.substr(i, part.size()), part)) return true;
  }
  return false;
}

bool ModelMatches(const std::vector<std::string>& wanted, const std::string& model) {
  if (wanted.empty()) return true;
  for (const std::string& w : wanted) {
    if (ContainsIgnoringCase(model, w)) return true;
  }
  return false;
}

}  // namespace

bool Fits(const Resources& r, const Node& node, std::vector<uint32_t>* gpus) {
  if (r.cpu_millis > node.FreeCpuMillis()) return false;
  if (r.memory_bytes > node.FreeMemoryBytes()) return false;
  gpus->clear();
  if (r.gpus == 0) return true;
  if (node.busy_gpus.size() + r.gpus > node.record.caps.gpus.size()) return false;
  for (const GpuDevice& g : node.record.caps.gpus) {
    if (node.busy_gpus.count(g.index)) continue;
    if (g.memory_bytes < r.gpu_memory_bytes) continue;
    if (!ModelMatches(r.gpu_models, g.model)) continue;
    gpus->push_back(g.index);
    if (gpus->size() == r.gpus) return true;
  }
  return false;
}

std::optional<Placement> BestFitPlacer::Place(const JobSpec& spec,
                                              const std::vector<const Node*>& nodes) const {
  std::optional<Placement> best;
  std::pair<size_t, int64_t> best_left;
  std::vector<uint32_t> gpus;
  for (const Node* node : nodes) {
    if (!node->Schedulable() || !Fits(spec.resources, *node, &gpus)) continue;
    const std::pair<size_t, int64_t> left = {
        node->record.caps.gpus.size() - node->busy_gpus.size() - gpus.size(),
        node->FreeCpuMillis() - spec.resources.cpu_millis};
    if (!best || left < best_left ||
        (left == best_left && node->record.name < best->node->record.name)) {
      best = Placement{node, gpus};
      best_left = left;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// PendingQueue

PendingQueue::GroupKey PendingQueue::GroupKeyOf(const Resources& r) {
  return {r.gpus, r.gpu_memory_bytes, r.gpu_models, r.cpu_millis, r.memory_bytes};
}

void PendingQueue::Add(Job* job, bool settled) {
  Group& group = groups_[GroupKeyOf(job->spec.resources)];
  if (group.jobs.empty()) group.resources = job->spec.resources;
  if (group.jobs.emplace(KeyOf(*job), job).second) size_++;
  if (!settled) group.settled = false;
}

void PendingQueue::Remove(const Job& job) {
  auto it = groups_.find(GroupKeyOf(job.spec.resources));
  if (it != groups_.end() && it->second.jobs.erase(KeyOf(job))) size_--;
}

const PendingQueue::Group* PendingQueue::GroupOf(const Job& job) const {
  auto it = groups_.find(GroupKeyOf(job.spec.resources));
  return it == groups_.end() || it->second.jobs.empty() ? nullptr : &it->second;
}

std::vector<const PendingQueue::Group*> PendingQueue::Groups() const {
  std::vector<const Group*> out;
  out.reserve(groups_.size());
  for (const auto& [key, group] : groups_) {
    if (!group.jobs.empty()) out.push_back(&group);
  }
  return out;
}

void PendingQueue::SettleAll() {
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (it->second.jobs.empty()) {
      groups_.erase(it++);
    } else {
      it->second.settled = true;
      ++it;
    }
  }
}

}  // namespace sched
