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

enum class NodeState {
  kReady,
  kCordoned,
  kDraining,
  kDown,
  kPreempting,
  // A rented node's life before its agent joins and after it is given back (Rental).
  kProvisioning,
  kJoining,
  kTerminating,
  kGone,
};
absl::string_view NodeStateName(NodeState s);

// Where a node the autoscaler rented is in its life. Metering runs from the create request
// (kProvisioning) to the provider's word that the machine is gone (kGone).
enum class RentalPhase {
  kProvisioning,  // asked of the provider; the machine is not up yet
  kJoining,       // the provider says it is up; its agent has not connected yet
  kReady,         // its agent joined
  kDraining,      // takes no new work; given back once its jobs end
  kTerminating,   // being given back
  kGone,          // given back: no longer paid for
};
absl::string_view RentalPhaseName(RentalPhase p);

struct RentalEvent {
  absl::Time time = absl::InfinitePast();
  RentalPhase phase = RentalPhase::kProvisioning;
  std::string message;
};

// A node the autoscaler rented from a provider, from the create request to the end.
struct Rental {
  std::string provider;  // the provider's name in schedd's autoscale config
  std::string offer_id;
  std::string instance_id;  // the provider's name for the machine; empty until create answers
  // The project whose waiting job rented it: it pays the time no job holds the node.
  std::string owner_project;
  RentalPhase phase = RentalPhase::kProvisioning;
  absl::Time create_time = absl::InfinitePast();
  absl::Time expected_ready = absl::InfinitePast();
  absl::Time ready_time = absl::InfinitePast();
  absl::Time end_time = absl::InfinitePast();
  double price_per_hour = 0;
  std::string message;  // the provider's last word, or why it was given back
  std::vector<RentalEvent> events;  // each phase it entered, oldest first (at most kMaxEvents)
  // From when no job has held the node (InfinitePast while one does): that time is charged to
  // the owner as ledger entries "node:<name>" numbered by ledger_seq.
  absl::Time unleased_since = absl::InfinitePast();
  uint64_t ledger_seq = 0;
  double closed_cost = 0;  // dollars of its ledger entries written so far (leases and unleased)

  static constexpr size_t kMaxEvents = 32;
  bool active() const { return phase != RentalPhase::kGone; }
};

// What is durable about a node: who it is and what the operator decided about it.
struct NodeRecord {
  std::string name;
  NodeCapabilities caps;
  bool cordoned = false;
  bool draining = false;
  absl::Time register_time = absl::InfinitePast();
  std::optional<Rental> rental;  // set for nodes the autoscaler rented
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
  std::set<uint32_t> busy_gpus;  // held by a job, shared by jobs that share_gpu, or the owner's
  // GPUs the machine's owner uses now, as its agent said in its last heartbeat (also in
  // busy_gpus, so nothing is placed on them); who, for people. Not stored.
  std::set<uint32_t> owner_gpus;
  std::string owner_detail;
  // GPUs that jobs with share_gpu hold: how many jobs, and the memory they reserved.
  struct GpuShare {
    uint32_t jobs = 0;
    int64_t memory_bytes = 0;
  };
  std::map<uint32_t, GpuShare> shared_gpus;
  uint32_t running_jobs = 0;
  // Room being made here for a higher-priority job by stopping lower ones
  // (Scheduler::PreemptForPriority): until it is placed, no job of its priority or lower is
  // placed here. Not stored: after a restart the stopping jobs still go back to the queue.
  std::string reserved_for;
  int32_t reserved_priority = 0;
  absl::Time reserved_until = absl::InfinitePast();
  // What the cost model derives from the capabilities (Scheduler, on connect):
  bool local = false;               // a machine the user owns: provider "local" or unset, or
                                    // priced from power and hardware
  double gpu_throughput = 0;        // one GPU's relative throughput in the catalog; 0: unknown
  double preemptions_per_hour = 0;  // spot nodes: how often the provider takes one back
  // The least and the most it costs an hour at any time of day (its price schedule's bounds).
  double min_price_per_hour = 0;
  double max_price_per_hour = 0;
  // A rented node's dollars from its creation to now (or its end), filled in the views the
  // Scheduler hands out.
  double cost_so_far = 0;

  NodeState state() const {
    if (record.rental) {
      switch (record.rental->phase) {
        case RentalPhase::kProvisioning: return NodeState::kProvisioning;
        case RentalPhase::kJoining: return connected ? NodeState::kReady : NodeState::kJoining;
        case RentalPhase::kTerminating: return NodeState::kTerminating;
        case RentalPhase::kGone: return NodeState::kGone;
        case RentalPhase::kReady:
        case RentalPhase::kDraining: break;
      }
    }
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
