#include "server/core/placement.h"

#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace sched {
namespace {

bool ModelMatches(const std::vector<std::string>& wanted, const std::string& model) {
  if (wanted.empty()) return true;
  for (const std::string& w : wanted) {
    if (absl::StrContains(absl::AsciiStrToLower(model), absl::AsciiStrToLower(w))) return true;
  }
  return false;
}

}  // namespace

bool Fits(const Resources& r, const Node& node, std::vector<uint32_t>* gpus) {
  if (r.cpu_millis > node.FreeCpuMillis()) return false;
  if (r.memory_bytes > node.FreeMemoryBytes()) return false;
  gpus->clear();
  if (r.gpus == 0) return true;
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
  std::tuple<size_t, int64_t, std::string> best_key;
  std::vector<uint32_t> gpus;
  for (const Node* node : nodes) {
    if (!node->Schedulable() || !Fits(spec.resources, *node, &gpus)) continue;
    size_t free_gpus_after = node->record.caps.gpus.size() - node->busy_gpus.size() - gpus.size();
    auto key = std::make_tuple(free_gpus_after,
                               node->FreeCpuMillis() - spec.resources.cpu_millis,
                               node->record.name);
    if (!best || key < best_key) {
      best = Placement{node, gpus};
      best_key = std::move(key);
    }
  }
  return best;
}

}  // namespace sched
