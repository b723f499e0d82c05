#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sched::cost {

// One GPU model as the catalog describes it. Figures are published ballparks, not measurements
// of any one card (docs/cost-model.md says where each comes from).
struct GpuModel {
  // Stable short id ("a100-80gb"): what prices and override files refer to.
  std::string key;
  // Names NVML reports for this model; the first is the canonical one.
  std::vector<std::string> nvml_names;
  // Short names users type ("a100", "3080"). Matched ignoring case, like NVML names and the key.
  std::vector<std::string> aliases;
  int64_t memory_bytes = 0;
  // Training throughput relative to the catalog's reference GPU (which is 1.0).
  double relative_throughput = 0;
  // Board power: what the card draws when a training job keeps it busy.
  int32_t power_watts = 0;
  // What one card costs to buy, for upgrade advice; 0 when it is not sold to individuals.
  double street_price_usd = 0;

  const std::string& name() const { return nvml_names.front(); }
};

// Dollars per GPU-hour.
struct PriceRange {
  double min_usd_per_hour = 0;
  double max_usd_per_hour = 0;

  // The middle of the range: what an estimate uses when it has nothing better.
  double typical() const { return (min_usd_per_hour + max_usd_per_hour) / 2; }
};

struct GpuPrice {
  std::string gpu;  // a GpuModel key, NVML name or alias
  PriceRange on_demand;
  // Explicit spot prices; when absent and the provider offers spot, on-demand less the
  // provider's spot discount.
  std::optional<PriceRange> spot;
};

// What happens to a spot instance the provider takes back.
enum class PreemptionAction { kTerminate, kPause };
absl::string_view PreemptionActionName(PreemptionAction a);

struct Provider {
  std::string name;  // "runpod", "aws", "local"
  // The user's own machines: no hourly rent; cost is electricity (and amortization, elsewhere).
  bool local = false;
  double electricity_usd_per_kwh = 0;  // local only
  bool offers_spot = false;
  double spot_discount = 0;             // fraction off on-demand, in [0, 1)
  double spot_preemptions_per_hour = 0;  // chance a spot instance is taken back in an hour
  absl::Duration preemption_notice = absl::ZeroDuration();
  PreemptionAction preemption_action = PreemptionAction::kTerminate;
  absl::Duration provisioning_time = absl::ZeroDuration();
  std::vector<GpuPrice> prices;
};

// What a user can buy for their own workstation besides GPU cards (whose prices are
// GpuModel::street_price_usd), for upgrade advice.
struct UpgradeData {
  // Desktop memory, dollars per GiB of a kit.
  double ram_usd_per_gib = 0;
  // Sizes of the memory kits people buy (e.g. 2x16, 2x32, 4x32 GiB), ascending. A kit replaces
  // the machine's memory: after the upgrade the machine has the kit's size.
  std::vector<int64_t> ram_kit_bytes;
  // GPUs a workstation takes (board slots, power supply, cooling).
  int32_t max_gpus = 1;
};

// The catalog as written: what a loader fills and an override merges into.
struct CatalogData {
  std::string as_of;          // "2026-11": when the figures were gathered
  std::string reference_gpu;  // the GPU whose relative_throughput is 1.0
  std::vector<GpuModel> gpus;
  std::vector<Provider> providers;
  // Absent: no RAM or added-GPU upgrades are known (a catalog without the section).
  std::optional<UpgradeData> upgrades;
};

// Field checks of one entry. The message starts with the field's path inside the entry
// ("memory: must be more than 0, got -1"), so a loader can put the entry's own path in front.
absl::Status ValidateGpuModel(const GpuModel& gpu);
absl::Status ValidateProvider(const Provider& provider);
absl::Status ValidateUpgrades(const UpgradeData& upgrades);

// `over` merged over `base`: a GPU with the same key or a provider with the same name replaces
// the base's whole entry (in its place); new ones are added at the end; a non-empty as_of or
// reference_gpu, and an upgrades section, replace the base's.
CatalogData MergeCatalogData(CatalogData base, const CatalogData& over);

// A validated catalog with lookups. Immutable once made; copies are independent.
class Catalog {
 public:
  // Checks every entry (ValidateGpuModel, ValidateProvider, ValidateUpgrades) and what ties them
  // together: each GPU key, NVML name and alias names one model only; each provider name is
  // unique; every price names a known GPU; the reference GPU is known and has throughput 1.0.
  // INVALID_ARGUMENT with the entry and the reason otherwise.
  static absl::StatusOr<Catalog> Create(CatalogData data);

  const std::string& as_of() const { return data_.as_of; }
  const GpuModel& reference_gpu() const { return data_.gpus[reference_index_]; }
  const std::vector<GpuModel>& gpus() const { return data_.gpus; }
  const std::vector<Provider>& providers() const { return data_.providers; }
  // The catalog's upgrades section; without one, no RAM kits and one GPU at most.
  const UpgradeData& upgrades() const { return upgrades_; }

  // The GPU model with this key, NVML name or alias, ignoring case and surrounding spaces;
  // nullptr when none. Pointers stay valid as long as the Catalog.
  const GpuModel* FindGpu(absl::string_view name) const;
  const Provider* FindProvider(absl::string_view name) const;

  // Price of one GPU of `gpu` for an hour at `provider`. NOT_FOUND for an unknown provider or
  // GPU, or one the provider does not rent; FAILED_PRECONDITION for spot at a provider with none.
  absl::StatusOr<PriceRange> Price(absl::string_view provider, absl::string_view gpu,
                                   bool spot) const;

 private:
  Catalog() = default;

  CatalogData data_;
  size_t reference_index_ = 0;
  UpgradeData upgrades_;
  absl::flat_hash_map<std::string, size_t> gpu_index_;       // lower-case name -> gpus index
  absl::flat_hash_map<std::string, size_t> provider_index_;  // lower-case name -> index
};

}  // namespace sched::cost
