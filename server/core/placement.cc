#include "server/core/placement.h"

#include <algorithm>

#include "absl/strings/ascii.h"

namespace sched {
namespace {

// Case-insensitive substring test that allocates nothing: it runs for every GPU of every node a
// GPU job is tried on.
bool ContainsIgnoringCase(absl::string_view text, absl::string_view part) {
  if (part.empty()) return true;
  const char first = absl::ascii_tolower(part[0]);
  for (size_t i = 0; i + part.size() <= text.size(); ++i) {
    if (absl::ascii_tolower(text[i]) != first) continue;
    size_t j = 1;
    while (j < part.size() && absl::ascii_tolower(text[i + j]) == absl::ascii_tolower(part[j])) ++j;
    if (j == part.size()) return true;
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
  if (r.share_gpu && r.gpus == 1 && !node.shared_gpus.empty() &&
      r.cpu_millis <= node.record.caps.cpu_millis - node.alloc_cpu_millis &&
      r.memory_bytes <= node.record.caps.memory_bytes - node.alloc_memory_bytes) {
    // Packed first onto a card already shared, where its memory fits beside the others'.
    for (const auto& [index, share] : node.shared_gpus) {
      for (const GpuDevice& g : node.record.caps.gpus) {
        if (g.index != index || !ModelMatches(r.gpu_models, g.model)) continue;
        if (g.memory_bytes - share.memory_bytes >= r.gpu_memory_bytes) {
          *gpus = {index};
          return true;
        }
      }
    }
  }
  return FitsOn(r, node.record.caps, node.alloc_cpu_millis, node.alloc_memory_bytes,
                node.busy_gpus, gpus);
}

bool FitsOn(const Resources& r, const NodeCapabilities& caps, int64_t alloc_cpu_millis,
            int64_t alloc_memory_bytes, const std::set<uint32_t>& busy_gpus,
            std::vector<uint32_t>* gpus) {
  if (r.cpu_millis > caps.cpu_millis - alloc_cpu_millis) return false;
  if (r.memory_bytes > caps.memory_bytes - alloc_memory_bytes) return false;
  gpus->clear();
  if (r.gpus == 0) return true;
  if (busy_gpus.size() + r.gpus > caps.gpus.size()) return false;
  for (const GpuDevice& g : caps.gpus) {
    if (busy_gpus.count(g.index)) continue;
    if (g.memory_bytes < r.gpu_memory_bytes) continue;
    if (!ModelMatches(r.gpu_models, g.model)) continue;
    gpus->push_back(g.index);
    if (gpus->size() == r.gpus) return true;
  }
  return false;
}

uint64_t GpuMask(const std::set<uint32_t>& indexes) {
  uint64_t mask = 0;
  for (uint32_t i : indexes) {
    if (i < 64) mask |= uint64_t{1} << i;
  }
  return mask;
}

uint64_t GpuMask(const std::vector<uint32_t>& indexes) {
  uint64_t mask = 0;
  for (uint32_t i : indexes) {
    if (i < 64) mask |= uint64_t{1} << i;
  }
  return mask;
}

uint64_t UsableGpus(const Resources& r, const NodeCapabilities& caps) {
  uint64_t mask = 0;
  for (const GpuDevice& g : caps.gpus) {
    if (g.index >= 64 || g.memory_bytes < r.gpu_memory_bytes) continue;
    if (!ModelMatches(r.gpu_models, g.model)) continue;
    mask |= uint64_t{1} << g.index;
  }
  return mask;
}

MostRoom MostRoom::Of(const std::vector<const Node*>& nodes) {
  MostRoom room;
  for (const Node* node : nodes) room.Add(*node);
  return room;
}

void MostRoom::Raise(const MostRoom& o) {
  cpu_millis = std::max(cpu_millis, o.cpu_millis);
  memory_bytes = std::max(memory_bytes, o.memory_bytes);
  gpus = std::max(gpus, o.gpus);
  gpu_memory_bytes = std::max(gpu_memory_bytes, o.gpu_memory_bytes);
}

void MostRoom::Add(const Node& node) {
  cpu_millis = std::max(cpu_millis, node.FreeCpuMillis());
  memory_bytes = std::max(memory_bytes, node.FreeMemoryBytes());
  const size_t total = node.record.caps.gpus.size(), busy = node.busy_gpus.size();
  if (total > busy) {
    gpus = std::max(gpus, total - busy);
    for (const GpuDevice& g : node.record.caps.gpus) {
      if (g.memory_bytes > gpu_memory_bytes && !node.busy_gpus.count(g.index)) {
        gpu_memory_bytes = g.memory_bytes;
      }
    }
  }
  // A shared card has room for one more job that shares, in the memory left on it.
  for (const auto& [index, share] : node.shared_gpus) {
    for (const GpuDevice& g : node.record.caps.gpus) {
      if (g.index != index || g.memory_bytes <= share.memory_bytes) continue;
      gpus = std::max<size_t>(gpus, 1);
      gpu_memory_bytes = std::max(gpu_memory_bytes, g.memory_bytes - share.memory_bytes);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PriceIndex

void PriceIndex::Insert(double key, const Node* node, size_t* slot) {
  order_[{key, node}] = slot;
  *slot = kNone;
  const Item item{key, node, slot, MostRoom()};
  loose_.insert(std::upper_bound(loose_.begin(), loose_.end(), item,
                                 [](const Item& a, const Item& b) { return a.Before(b.key, b.node); }),
                item);
}

void PriceIndex::Erase(double key, const Node* node, size_t* slot) {
  order_.erase({key, node});
  if (*slot != kNone) {
    items_[*slot].node = nullptr;
    holes_++;
    Touch(slot);
  } else {
    loose_.erase(std::remove_if(loose_.begin(), loose_.end(),
                                [&](const Item& i) { return i.node == node; }),
                 loose_.end());
  }
  *slot = kNone;
}

void PriceIndex::Touch(const size_t* slot) {
  if (*slot == kNone) return;  // loose, or not here: always walked
  Item& touched = items_[*slot];
  touched.room = MostRoom();
  if (touched.node != nullptr) touched.room.Add(*touched.node);
  const size_t b = *slot / kBlock;
  MostRoom room;
  const size_t end = std::min(items_.size(), (b + 1) * kBlock);
  for (size_t i = b * kBlock; i < end; ++i) {
    if (items_[i].node != nullptr) room.Raise(items_[i].room);
  }
  blocks_[b] = room;
}

void PriceIndex::LayOut() {
  items_.clear();
  blocks_.clear();
  loose_.clear();
  holes_ = 0;
  items_.reserve(order_.size());
  for (const auto& [key_node, slot] : order_) {
    const auto& [key, node] = key_node;
    *slot = items_.size();
    if (items_.size() % kBlock == 0) blocks_.emplace_back();
    Item& item = items_.emplace_back(Item{key, node, slot, MostRoom()});
    item.room.Add(*node);
    blocks_.back().Raise(item.room);
  }
}

// ---------------------------------------------------------------------------------------------
// PendingQueue

PendingQueue::GroupKey PendingQueue::GroupKeyOf(const JobSpec& spec) {
  const Resources& r = spec.resources;
  // Without a runtime of its own, a job's runtime is learned from the runs of its name. Jobs
  // that share a GPU fare apart from those that hold one: the top bit of the count says which.
  return {r.gpus | (r.share_gpu ? uint32_t{1} << 31 : 0),
          r.gpu_memory_bytes,
          r.gpu_models,
          r.cpu_millis,
          r.memory_bytes,
          spec.project,
          static_cast<int>(spec.placement),
          static_cast<int>(spec.spot),
          spec.deadline,
          spec.max_cost,
          spec.runtime,
          spec.runtime_gpu_model,
          spec.runtime > absl::ZeroDuration() ? std::string() : spec.name};
}

const PendingQueue::Group* PendingQueue::Add(Job* job, bool settled) {
  Group& group = groups_[GroupKeyOf(job->spec)];
  if (group.jobs.empty()) {
    group.resources = job->spec.resources;
    group.project = job->spec.project;
  }
  const Key key = KeyOf(*job);
  if (group.jobs.emplace(key, job).second) size_++;
  if (!(group.horizon < key)) group.version++;
  if (group.first == nullptr || key < group.first_key) {
    group.first = job;
    group.first_key = key;
    group.standing.known = false;
  }
  if (!settled) {
    group.settled = false;
    group.standing.known = false;
  }
  return &group;
}

const PendingQueue::Group* PendingQueue::Remove(const Job& job) {
  auto it = groups_.find(GroupKeyOf(job.spec));
  if (it == groups_.end()) return nullptr;
  Group& group = it->second;
  const Key key = KeyOf(job);
  if (!group.jobs.erase(key)) return nullptr;
  size_--;
  if (!(group.horizon < key)) group.version++;
  if (key == group.first_key) {
    group.first = group.jobs.empty() ? nullptr : group.jobs.begin()->second;
    if (group.first != nullptr) group.first_key = group.jobs.begin()->first;
    group.standing.known = false;
  }
  return &group;
}

const PendingQueue::Group* PendingQueue::GroupOf(const Job& job) const {
  auto it = groups_.find(GroupKeyOf(job.spec));
  return it == groups_.end() || it->second.first == nullptr ? nullptr : &it->second;
}

std::vector<const PendingQueue::Group*> PendingQueue::Groups() const {
  std::vector<const Group*> out;
  out.reserve(groups_.size());
  for (const auto& [key, group] : groups_) {
    if (group.first != nullptr) out.push_back(&group);
  }
  return out;
}

void PendingQueue::Unsettle(const std::string& project) {
  for (auto& [key, group] : groups_) {
    if (project.empty() || group.project == project) {
      group.settled = false;
      group.standing.known = false;
    }
  }
}

void PendingQueue::UnsettleGroupOf(const Job& job) {
  auto it = groups_.find(GroupKeyOf(job.spec));
  if (it != groups_.end()) {
    it->second.settled = false;
    it->second.standing.known = false;
  }
}

void PendingQueue::SetStanding(const Job& job, const Standing& standing) {
  auto it = groups_.find(GroupKeyOf(job.spec));
  if (it != groups_.end() && it->second.first == &job) it->second.standing = standing;
}

// The groups are this queue's own: the const pointers it hands out may be written through here.
void PendingQueue::ForgetStanding(const Group* group) {
  if (group != nullptr) const_cast<Group*>(group)->standing.known = false;
}

void PendingQueue::NoteBudgetNeedAtMost(const Group* group, double dollars) {
  if (group == nullptr) return;
  Group* g = const_cast<Group*>(group);
  if (g->budget_needed < 0 || dollars < g->budget_needed) g->budget_needed = dollars;
}

void PendingQueue::ForgetLearned(const std::string& project, const std::string& name) {
  for (auto& [key, group] : groups_) {
    if (group.first == nullptr || group.project != project) continue;
    const JobSpec& spec = group.first->spec;
    if (spec.runtime <= absl::ZeroDuration() && spec.name == name) group.standing.known = false;
  }
}

void PendingQueue::UnsettleHeldByBudget(const std::string& project, double room) {
  for (auto& [key, group] : groups_) {
    if (group.project != project) continue;
    // What a standing decision may count on can only grow here.
    Standing& s = group.standing;
    if (s.known && s.budget_room >= 0) s.budget_room = std::max(s.budget_room, room);
    if (group.budget_needed < 0) continue;
    if (group.budget_needed <= room + 1e-9) {
      group.settled = false;
      group.budget_needed = -1;
    }
  }
}

void PendingQueue::SettleAll() {
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (it->second.first == nullptr) {
      groups_.erase(it++);
    } else {
      it->second.settled = true;
      ++it;
    }
  }
}

}  // namespace sched
