#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/core/job.h"
#include "server/core/node.h"

namespace sched {

struct Placement {
  const Node* node = nullptr;
  std::vector<uint32_t> gpu_indexes;
};

// Chooses a node for a job. The cost model grows behind this interface.
class Placer {
 public:
  virtual ~Placer() = default;
  // A node among `nodes` with room for `spec` now, or nullopt. Only schedulable nodes may be
  // chosen. Deterministic for the same inputs.
  virtual std::optional<Placement> Place(const JobSpec& spec,
                                         const std::vector<const Node*>& nodes) const = 0;
};

// True when `node`'s free resources cover `r`; fills `gpus` with the GPUs to give.
bool Fits(const Resources& r, const Node& node, std::vector<uint32_t>* gpus);

// Resource fit; among the nodes that fit, the one left with the fewest free GPUs, then the
// fewest free CPUs (best fit keeps big holes for big jobs), then by name.
class BestFitPlacer final : public Placer {
 public:
  std::optional<Placement> Place(const JobSpec& spec,
                                 const std::vector<const Node*>& nodes) const override;
};

}  // namespace sched
