#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/cost/price_schedule.h"

namespace sched {

struct GpuDevice {
  uint32_t index = 0;
  std::string uuid;
  std::string model;
  int64_t memory_bytes = 0;
};

// How a machine the user owns is priced: price_per_hour = energy + amortization, in dollars.
struct LocalPrice {
  double power_watts = 0;
  double electricity_dollars_per_kwh = 0;
  double hardware_cost_dollars = 0;
  double amortize_months = 0;  // of 730 hours
  double energy_dollars_per_hour = 0;
  double amortization_dollars_per_hour = 0;
};

// What an agent reports about its machine (sched.v1.Capabilities).
struct NodeCapabilities {
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  int64_t disk_bytes = 0;
  std::vector<GpuDevice> gpus;
  std::string provider;
  double price_per_hour = 0;  // dollars
  bool spot = false;
  std::string region;
  std::string instance_type;
  // Set when price_per_hour was computed from these parts rather than given.
  std::optional<LocalPrice> local_price;
  // Prices by time of day: price_per_hour applies outside its windows (all day when empty).
  cost::PriceSchedule price_schedule;
  // Fields the operator gave in place of detected values ("gpus", "provider").
  std::vector<std::string> advertised;
  std::map<std::string, std::string> labels;
  std::string hostname;
  std::string gpu_detection;
  std::string agent_version;
};

enum class NodeState { kReady, kCordoned, kDraining, kDown, kPreempting };
absl::string_view NodeStateName(NodeState s);

// What is durable about a node: who it is and what the operator decided about it.
struct NodeRecord {
  std::string name;
  NodeCapabilities caps;
  bool cordoned = false;
  bool draining = false;
  absl::Time register_time = absl::InfinitePast();
};

// Live view of a node: the record plus connection and allocation.
struct Node {
  NodeRecord record;
  bool connected = false;
  // Its agent got a preemption notice on this connection: it takes no new work.
  bool preempting = false;
  absl::Time last_heartbeat = absl::InfinitePast();
  int64_t alloc_cpu_millis = 0;
  int64_t alloc_memory_bytes = 0;
  std::set<uint32_t> busy_gpus;
  uint32_t running_jobs = 0;
  // What the cost model derives from the capabilities (Scheduler, on connect):
  bool local = false;               // a machine the user owns: provider "local" or unset, or
                                    // priced from power and hardware
  double gpu_throughput = 0;        // one GPU's relative throughput in the catalog; 0: unknown
  double preemptions_per_hour = 0;  // spot nodes: how often the provider takes one back
  // The least and the most it costs an hour at any time of day (its price schedule's bounds).
  double min_price_per_hour = 0;
  double max_price_per_hour = 0;

  NodeState state() const {
    if (!connected) return NodeState::kDown;
    if (preempting) return NodeState::kPreempting;
    if (record.draining) return NodeState::kDraining;
    if (record.cordoned) return NodeState::kCordoned;
    return NodeState::kReady;
  }
  bool Schedulable() const { return state() == NodeState::kReady; }
  int64_t FreeCpuMillis() const { return record.caps.cpu_millis - alloc_cpu_millis; }
  int64_t FreeMemoryBytes() const { return record.caps.memory_bytes - alloc_memory_bytes; }
};

}  // namespace sched
