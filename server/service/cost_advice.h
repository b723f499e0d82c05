#pragma once

// What GetCostAdvice gathers from the Scheduler's state before the advice is computed
// (cost::AdviseUpgrades): the local machine, and the window's cloud runs of jobs that went to the
// cloud because no local machine could ever hold them.

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/job.h"
#include "server/core/ledger.h"
#include "server/core/node.h"
#include "server/cost/advise.h"

namespace sched {

// A machine the user owns: its provider is "local" or empty, or its price was computed from a
// local price (power x tariff + amortization).
bool IsLocalNode(const NodeCapabilities& caps);

// The node the advice is for: `name` when given (NOT_FOUND when no node has it,
// INVALID_ARGUMENT when it is not local), else the local node with the most GPU memory in all
// (then the most RAM, then the first name). FAILED_PRECONDITION when there is no local node.
// The pointer is into `nodes`.
absl::StatusOr<const Node*> PickLocalNode(const std::vector<Node>& nodes, const std::string& name);

// The machine as the advice sees it: the first GPU's model, the GPU count, the smallest GPU's
// memory, and from a local price its power and tariff.
cost::LocalMachine LocalMachineOf(const Node& node);

struct AdviceWindow {
  cost::AdviceInput input;
  double cloud_usd = 0;  // everything spent on nodes that are not local in the window
};

// Each entry's part inside [since, until] on a node that is not local is cloud spend; it is a
// run for the advice when its job's last decision says no local machine could hold it
// (LocalBlocker::kTooSmall). A run's GPUs are its job's GPU count of the model of the node it ran
// on (unknown, and so not scaled, when the node is gone); its needs are the job's resources.
// Entries whose job is not in `jobs` count as cloud spend only.
AdviceWindow GatherAdviceInput(const std::vector<LedgerEntry>& ledger,
                               const absl::flat_hash_map<std::string, Job>& jobs,
                               const std::vector<Node>& nodes, const Node& machine,
                               absl::Time since, absl::Time until);

}  // namespace sched
