#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/cost/catalog.h"
#include "server/cost/runtime_estimate.h"

namespace sched::cost {

// Upgrade advice: of the runs that went to the cloud only because the user's own machine was too
// small, which ones an upgrade from the catalog would have brought home, what that would have
// saved, and how soon the upgrade would pay for itself (docs/cost-model.md, "Upgrade advice").
// Every figure rests on the catalog's ballparks and on the past repeating itself.

// The user's machine as it is now.
struct LocalMachine {
  std::string name;
  // `gpu_count` cards of `gpu_model` (a catalog key, NVML name or alias); empty and 0: none. A
  // model the catalog does not know is kept as it is: the machine's runs cannot be scaled to it.
  std::string gpu_model;
  int32_t gpu_count = 0;
  int64_t gpu_memory_bytes = 0;  // per GPU, as the machine reports it
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;
  // The whole machine's draw under load, from its local price (power x tariff); 0: unknown, and
  // only the GPUs' board power is counted.
  double power_watts = 0;
  // Its tariff; 0: the catalog's local provider's.
  double electricity_usd_per_kwh = 0;
};

// What a run's job asked for (its spec's resources).
struct RunNeeds {
  int32_t gpus = 0;
  int64_t gpu_memory_bytes = 0;         // per GPU
  std::vector<std::string> gpu_models;  // any of these; empty: any model
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;
};

// One lease in the cloud of a job that went there because no machine of the user's could ever
// hold it.
struct CloudRun {
  std::string job_id;
  std::string job_name;
  std::string project;
  double dollars = 0;
  double hours = 0;
  GpuAllocation ran_on;  // the cloud node's GPUs the run held; CPU only when none
  RunNeeds needs;
};

struct AdviceInput {
  LocalMachine machine;
  std::vector<CloudRun> runs;
  double window_days = 30;  // how long a stretch of history `runs` covers
};

enum class UpgradeKind {
  kReplaceGpus,  // the machine's GPUs swapped for other cards (or a first card put in)
  kAddGpus,      // more cards of the model the machine has
  kRam,          // a RAM kit in place of the machine's memory
  kGpusAndRam,   // one of the GPU upgrades and a RAM kit together
};

// One upgrade and what it would have done over the window.
struct UpgradePath {
  UpgradeKind kind = UpgradeKind::kReplaceGpus;
  // For people: "RTX 4090 in place of RTX 3080", "second RTX 3080", "RAM 32 GiB -> 128 GiB".
  std::string description;
  // The machine after the upgrade.
  // Catalog key; the name the machine reports when the catalog does not know its GPUs.
  std::string gpu_model;
  int32_t gpu_count = 0;
  int64_t gpu_memory_bytes = 0;  // per GPU
  int64_t memory_bytes = 0;
  double price_usd = 0;  // cards at street price, RAM kits at the catalog's price per GiB
  // The runs it brings home: they fit the upgraded machine and not the machine as it is.
  std::vector<std::string> job_ids;  // distinct, in the order of the input runs
  int32_t runs = 0;
  double cloud_usd = 0;  // what those runs cost in the cloud
  // What they would have cost at home: the runtime scaled from the cloud GPUs to the new ones
  // (ScaleRuntime) times the upgraded machine's draw at the tariff. Energy only: the upgrade's
  // price is what payback is measured against.
  double local_usd = 0;
  // Runs whose runtime was taken as measured: CPU-only runs, and runs on GPUs (cloud or new)
  // the catalog cannot compare.
  int32_t runs_not_scaled = 0;
  double saving_usd = 0;            // cloud_usd - local_usd; negative when home is dearer
  double saving_usd_per_month = 0;  // saving_usd over the window, scaled to 30 days
  // price_usd / saving_usd_per_month; infinite when the upgrade saves nothing.
  double payback_months = 0;
};

struct Advice {
  double window_days = 0;
  // Every run of the input: what went to the cloud for being too big for the machine.
  int32_t too_small_runs = 0;
  double too_small_usd = 0;
  // Runs that fit the machine as it is now (it grew since, or they were too small for another
  // local machine): no upgrade needed for them, so no path counts them.
  int32_t fits_now_runs = 0;
  double fits_now_usd = 0;
  // Runs no upgrade path brings home (more GPUs or memory than a workstation takes, more CPUs).
  int32_t no_path_runs = 0;
  double no_path_usd = 0;
  // Paths that bring at least one run home: those that save, soonest payback first (then the
  // larger saving, then the description); then those that save nothing, by description. Paths
  // that bring nothing home are left out, and unless AdviseOptions::keep_dominated, so are paths
  // another path beats on every count: it brings home the same runs or more, costs no more and
  // pays back no later (and is better in one of the three).
  std::vector<UpgradePath> paths;
  int32_t dominated_paths = 0;  // left out as beaten
};

struct AdviseOptions {
  RuntimeOptions runtime;
  bool keep_dominated = false;
};

// The upgrade paths the catalog offers for `input.machine`, each weighed against `input.runs`:
//  - its GPUs replaced by max(count, 1) up to upgrades().max_gpus cards of each model sold to
//    individuals (street_price_usd > 0) with more memory or more throughput than its own;
//  - more cards of its own model, up to max_gpus, when that model is sold;
//  - each RAM kit larger than its memory;
//  - a GPU path with a RAM kit, when together they bring home a run neither does alone.
// A run fits a machine as placement would place it: GPU count, memory per GPU, a wanted model
// contained in the card's name (ignoring case), RAM and CPUs. INVALID_ARGUMENT naming the field
// for a window that is not positive and finite, or a negative count, size, price or duration in
// the input, or a multi_gpu_efficiency outside (0, 1].
absl::StatusOr<Advice> AdviseUpgrades(const Catalog& catalog, const AdviceInput& input,
                                      const AdviseOptions& options = {});

// "replace-gpus", "add-gpus", "ram", "gpus-and-ram".
absl::string_view UpgradeKindName(UpgradeKind kind);

}  // namespace sched::cost
