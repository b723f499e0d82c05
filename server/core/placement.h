#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/time/time.h"
#include "server/core/job.h"
#include "server/core/node.h"

namespace sched {

struct Placement {
  const Node* node = nullptr;
  std::vector<uint32_t> gpu_indexes;
};

// True when `node`'s free resources cover `r`; fills `gpus` with the GPUs to give.
bool Fits(const Resources& r, const Node& node, std::vector<uint32_t>* gpus);
// The same for a machine of `caps` with the given parts taken.
bool FitsOn(const Resources& r, const NodeCapabilities& caps, int64_t alloc_cpu_millis,
            int64_t alloc_memory_bytes, const std::set<uint32_t>& busy_gpus,
            std::vector<uint32_t>* gpus);
// GPU sets as bits (bit i: GPU index i), for the expected-wait timelines; GPUs with an index of
// 64 or more are left out (no machine has that many).
uint64_t GpuMask(const std::set<uint32_t>& indexes);
uint64_t GpuMask(const std::vector<uint32_t>& indexes);
// The GPUs of `caps` that suit `r` (memory and model), whether free or not.
uint64_t UsableGpus(const Resources& r, const NodeCapabilities& caps);
// True when an idle machine of `caps` could hold `r`.
inline bool CouldEverFit(const Resources& r, const NodeCapabilities& caps) {
  std::vector<uint32_t> gpus;
  return FitsOn(r, caps, 0, 0, {}, &gpus);
}

// The most free CPU, memory and GPUs that any one of some nodes has, and the largest free GPU:
// a job asking more of any of them fits none of those nodes. Stays a valid bound while the
// nodes only lose room.
struct MostRoom {
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  size_t gpus = 0;
  int64_t gpu_memory_bytes = 0;

  static MostRoom Of(const std::vector<const Node*>& nodes);
  // Raises each part to what `node` has free, where it is more.
  void Add(const Node& node);
  // Raises each part to `o`'s, where it is more.
  void Raise(const MostRoom& o);
  bool MayFit(const Resources& r) const {
    return r.cpu_millis <= cpu_millis && r.memory_bytes <= memory_bytes && r.gpus <= gpus &&
           (r.gpus == 0 || r.gpu_memory_bytes <= gpu_memory_bytes);
  }
};

// Nodes in the order of a key (a price), cut into blocks that remember the most room any of
// their nodes has free, so that a walk for a job passes over whole blocks where it fits nowhere:
// with most nodes full, a job that fits few of them finds them without looking at the rest.
//
// Each node has a slot of its owner's where the index keeps its position; Touch(slot) after its
// free room changed. A node inserted since the last layout is kept loose, in key order, and
// always walked; one erased leaves a hole. Prepare() lays the blocks out again once there are
// more than kLoose of the two, so that nodes joining one by one cost a layout every kLoose.
class PriceIndex {
 public:
  static constexpr size_t kNone = ~size_t{0};
  static constexpr size_t kBlock = 32;
  static constexpr size_t kLoose = 128;

  void Insert(double key, const Node* node, size_t* slot);
  void Erase(double key, const Node* node, size_t* slot);
  void Touch(const size_t* slot);
  void Prepare() {
    if (loose_.size() + holes_ > kLoose) LayOut();
  }
  // Calls fn(key, node) in key order (ties in the order of the nodes' addresses) for every
  // loose node and every laid-out node where `r` may fit, until fn returns false.
  template <typename Fn>
  void Walk(const Resources& r, Fn fn) const;

 private:
  struct Item {
    double key;
    const Node* node;  // null: erased since the layout (a hole)
    size_t* slot;
    // The node's own free room as of its last Touch (laid-out items only), so that a walk
    // passes over a full node without reading it.
    MostRoom room;
    bool Before(double k, const Node* n) const { return key < k || (key == k && node < n); }
  };
  void LayOut();

  absl::btree_map<std::pair<double, const Node*>, size_t*> order_;  // to each node's slot
  std::vector<Item> items_;       // as laid out, holes included
  std::vector<MostRoom> blocks_;  // blocks_[b]: of items_[b * kBlock, (b + 1) * kBlock)
  std::vector<Item> loose_;       // inserted since, in key order; their slots say kNone
  size_t holes_ = 0;
};

template <typename Fn>
void PriceIndex::Walk(const Resources& r, Fn fn) const {
  size_t l = 0;  // the next loose node
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (!blocks_[b].MayFit(r)) continue;
    const size_t end = std::min(items_.size(), (b + 1) * kBlock);
    for (size_t i = b * kBlock; i < end; ++i) {
      const Item& item = items_[i];
      if (item.node == nullptr || !item.room.MayFit(r)) continue;
      for (; l < loose_.size() && loose_[l].Before(item.key, item.node); ++l) {
        if (!fn(loose_[l].key, *loose_[l].node)) return;
      }
      if (!fn(item.key, *item.node)) return;
    }
  }
  for (; l < loose_.size(); ++l) {
    if (!fn(loose_[l].key, *loose_[l].node)) return;
  }
}

// The pending jobs, grouped by what their placement depends on (resources, project, policies,
// deadline, max_cost, runtime): jobs alike in these fare alike, so placement decides once per
// group instead of once per job. Within a group, jobs are in
// queue order: highest priority first, then oldest.
//
// A group is *settled* when none of its jobs fits any node that had room when it was last
// tried; a group becomes unsettled when a job is added with `settled = false` (a job back from
// a lost lease, or loaded at start), and settled again by SettleAll(). The owner keeps the jobs
// alive while they are queued.
class PendingQueue {
 public:
  // (-priority, seq): smaller comes first.
  using Key = std::pair<int64_t, uint64_t>;
  static Key KeyOf(const Job& job) { return {-static_cast<int64_t>(job.spec.priority), job.seq}; }

  // What the last decision for a group's first job leaves open, so that a rented node that
  // gains room is decided on only when it could change that decision: a node whose cost for
  // the job is sure to be above `bar` (the standing choice's dearest cost), above the budget
  // room or above max_cost cannot win. Forgotten (known = false) whenever the group is
  // unsettled or its first job changes; the Scheduler forgets it when the job's runtime is
  // learned anew or a job is queued ahead of it on the node it waits for.
  struct Standing {
    bool known = false;
    double bar = 0;              // dollars; HUGE_VAL when any node with room could win
    // When the standing choice misses the deadline the earliest finish wins: a node that
    // cannot finish by this time cannot beat it. InfiniteFuture otherwise.
    absl::Time finish_bar = absl::InfiniteFuture();
    // When the decision is due again (its wait should be over, a cheap window opens, the
    // deadline closes in): it stands until then.
    absl::Time until = absl::InfiniteFuture();
    double budget_room = -1;     // dollars left under the project's cap when decided; <0: none
    // What the standing choice costs: under a cap, once less than this is left the choice is
    // over budget and no longer stands.
    double chosen_cost = 0;
    double gpu_work_hours = 0;   // the first job's work (Scheduler::Work), to cost a node
    absl::Duration plain;
  };

  // Jobs of one project asking the same resources: they fare alike with nodes and budgets.
  struct Group {
    Resources resources;
    std::string project;
    absl::btree_map<Key, Job*> jobs;
    // jobs.begin(), kept here so that a pass over the groups reads only the groups.
    Job* first = nullptr;  // null when empty
    Key first_key;
    bool settled = true;
    // Held back by the project's budget cap: the least it needs left under the cap to go on a
    // node that had room; negative when not held by the budget.
    double budget_needed = -1;
    // Raised by an Add or Remove at or before `horizon`: the expected-wait timelines that count
    // this group's jobs are rebuilt when it moves.
    uint64_t version = 0;
    // The last key any kept timeline may count among its jobs (set as they are built): jobs
    // coming or going behind it change no timeline.
    mutable Key horizon{std::numeric_limits<int64_t>::min(), 0};
    Standing standing;
  };

  // Returns the job's group.
  const Group* Add(Job* job, bool settled);
  // No-op when the job is not queued. Returns the group it left, or null.
  const Group* Remove(const Job& job);

  // The group `job` belongs to, or null when no queued job asks for its resources.
  const Group* GroupOf(const Job& job) const;
  // Groups that hold jobs, in no particular order. The pointers stay valid until SettleAll.
  std::vector<const Group*> Groups() const;
  // Marks every group settled and forgets the empty ones.
  void SettleAll();
  // Marks the groups of `project` (every group when empty) unsettled: tried on every node with
  // room at the next pass, as when what the project may spend changed.
  void Unsettle(const std::string& project);
  // Marks the group of `job` unsettled, as when time changed what is best for it.
  void UnsettleGroupOf(const Job& job);
  // Marks unsettled the groups of `project` held back by the budget that `room` dollars let go;
  // `room` is what the project now has left under its cap.
  void UnsettleHeldByBudget(const std::string& project, double room);
  // Keeps (or forgets, with known = false) the standing decision of the group of `job`.
  void SetStanding(const Job& job, const Standing& standing);
  void ForgetStanding(const Group* group);
  // The group is held back by the budget until at least `dollars` are left under the cap.
  void NoteBudgetNeedAtMost(const Group* group, double dollars);
  // Forgets the standing decisions of `project`'s groups whose runtime is learned from the
  // runs of `name`.
  void ForgetLearned(const std::string& project, const std::string& name);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  using GroupKey = std::tuple<uint32_t, int64_t, std::vector<std::string>, int64_t, int64_t,
                              std::string, int, int, absl::Time, double, absl::Duration,
                              std::string, std::string>;
  static GroupKey GroupKeyOf(const JobSpec& spec);

  // Node-based: Group pointers stay valid while the group exists.
  absl::node_hash_map<GroupKey, Group> groups_;
  size_t size_ = 0;
};

}  // namespace sched
