#include "server/cost/catalog.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/status_macros.h"

namespace sched::cost {
namespace {

absl::Status Invalid(absl::string_view path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", reason));
}

std::string Fold(absl::string_view name) {
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
}

absl::Status CheckPositive(absl::string_view path, double value) {
  if (value > 0) return absl::OkStatus();
  return Invalid(path, absl::StrFormat("must be more than 0, got %g", value));
}

absl::Status CheckNotNegative(absl::string_view path, double value) {
  if (value >= 0) return absl::OkStatus();
  return Invalid(path, absl::StrFormat("must not be negative, got %g", value));
}

absl::Status CheckFraction(absl::string_view path, double value) {
  if (value >= 0 && value <= 1) return absl::OkStatus();
  return Invalid(path, absl::StrFormat("must be between 0 and 1, got %g", value));
}

absl::Status CheckRange(absl::string_view path, const PriceRange& r) {
  SCHED_RETURN_IF_ERROR(CheckNotNegative(absl::StrCat(path, ".min"), r.min_usd_per_hour));
  SCHED_RETURN_IF_ERROR(CheckNotNegative(absl::StrCat(path, ".max"), r.max_usd_per_hour));
  if (r.min_usd_per_hour <= r.max_usd_per_hour) return absl::OkStatus();
  return Invalid(path, absl::StrFormat("min %g is above max %g", r.min_usd_per_hour,
                                       r.max_usd_per_hour));
}

absl::Status CheckName(absl::string_view path, absl::string_view name) {
  if (!absl::StripAsciiWhitespace(name).empty()) return absl::OkStatus();
  return Invalid(path, "must not be empty");
}

template <typename T, typename KeyOf>
void MergeByKey(std::vector<T>* base, const std::vector<T>& over, KeyOf key_of) {
  for (const T& entry : over) {
    bool replaced = false;
    for (T& existing : *base) {
      if (Fold(key_of(existing)) == Fold(key_of(entry))) {
        existing = entry;
        replaced = true;
        break;
      }
    }
    if (!replaced) base->push_back(entry);
  }
}

}  // namespace

absl::string_view PreemptionActionName(PreemptionAction a) {
  return a == PreemptionAction::kPause ? "pause" : "terminate";
}

absl::Status ValidateGpuModel(const GpuModel& gpu) {
  SCHED_RETURN_IF_ERROR(CheckName("key", gpu.key));
  if (gpu.nvml_names.empty()) return Invalid("nvml_names", "must name at least one model");
  for (size_t i = 0; i < gpu.nvml_names.size(); ++i) {
    SCHED_RETURN_IF_ERROR(CheckName(absl::StrCat("nvml_names[", i, "]"), gpu.nvml_names[i]));
  }
  for (size_t i = 0; i < gpu.aliases.size(); ++i) {
    SCHED_RETURN_IF_ERROR(CheckName(absl::StrCat("aliases[", i, "]"), gpu.aliases[i]));
  }
  SCHED_RETURN_IF_ERROR(CheckPositive("memory", static_cast<double>(gpu.memory_bytes)));
  SCHED_RETURN_IF_ERROR(CheckPositive("relative_throughput", gpu.relative_throughput));
  SCHED_RETURN_IF_ERROR(CheckPositive("power_watts", gpu.power_watts));
  return CheckNotNegative("street_price_usd", gpu.street_price_usd);
}

absl::Status ValidateProvider(const Provider& p) {
  SCHED_RETURN_IF_ERROR(CheckName("name", p.name));
  SCHED_RETURN_IF_ERROR(CheckNotNegative("electricity_usd_per_kwh", p.electricity_usd_per_kwh));
  if (!p.local && p.electricity_usd_per_kwh > 0) {
    return Invalid("electricity_usd_per_kwh", "only a local provider pays for electricity");
  }
  if (p.local && p.offers_spot) return Invalid("spot", "a local provider has no spot market");
  SCHED_RETURN_IF_ERROR(CheckFraction("spot.discount", p.spot_discount));
  if (p.spot_discount == 1) return Invalid("spot.discount", "must be below 1 (spot is not free)");
  SCHED_RETURN_IF_ERROR(CheckFraction("spot.preemptions_per_hour", p.spot_preemptions_per_hour));
  if (p.preemption_notice < absl::ZeroDuration()) {
    return Invalid("spot.notice", "must not be negative");
  }
  if (p.provisioning_time < absl::ZeroDuration()) {
    return Invalid("provisioning", "must not be negative");
  }
  for (size_t i = 0; i < p.prices.size(); ++i) {
    const GpuPrice& price = p.prices[i];
    const std::string path = absl::StrCat("prices[", i, "]");
    SCHED_RETURN_IF_ERROR(CheckName(absl::StrCat(path, ".gpu"), price.gpu));
    SCHED_RETURN_IF_ERROR(CheckRange(absl::StrCat(path, ".on_demand"), price.on_demand));
    if (price.spot.has_value()) {
      if (!p.offers_spot) {
        return Invalid(absl::StrCat(path, ".spot"), "the provider offers no spot instances");
      }
      SCHED_RETURN_IF_ERROR(CheckRange(absl::StrCat(path, ".spot"), *price.spot));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUpgrades(const UpgradeData& u) {
  SCHED_RETURN_IF_ERROR(CheckNotNegative("ram_usd_per_gib", u.ram_usd_per_gib));
  if (!u.ram_kit_bytes.empty() && u.ram_usd_per_gib == 0) {
    return Invalid("ram_usd_per_gib", "must be more than 0 when ram_kits are listed");
  }
  for (size_t i = 0; i < u.ram_kit_bytes.size(); ++i) {
    const std::string path = absl::StrCat("ram_kits[", i, "]");
    SCHED_RETURN_IF_ERROR(CheckPositive(path, static_cast<double>(u.ram_kit_bytes[i])));
    if (i > 0 && u.ram_kit_bytes[i] <= u.ram_kit_bytes[i - 1]) {
      return Invalid(path, "must be larger than the kit before it (list kits ascending)");
    }
  }
  if (u.max_gpus < 1 || u.max_gpus > 16) {
    return Invalid("max_gpus", absl::StrFormat("must be between 1 and 16, got %d", u.max_gpus));
  }
  return absl::OkStatus();
}

CatalogData MergeCatalogData(CatalogData base, const CatalogData& over) {
  if (!over.as_of.empty()) base.as_of = over.as_of;
  if (!over.reference_gpu.empty()) base.reference_gpu = over.reference_gpu;
  if (over.upgrades.has_value()) base.upgrades = over.upgrades;
  MergeByKey(&base.gpus, over.gpus, [](const GpuModel& g) { return g.key; });
  MergeByKey(&base.providers, over.providers, [](const Provider& p) { return p.name; });
  return base;
}

absl::StatusOr<Catalog> Catalog::Create(CatalogData data) {
  Catalog c;
  c.data_ = std::move(data);
  if (c.data_.as_of.empty()) return Invalid("as_of", "missing: say when the figures are from");
  for (size_t i = 0; i < c.data_.gpus.size(); ++i) {
    const GpuModel& gpu = c.data_.gpus[i];
    const std::string path =
        Fold(gpu.key).empty() ? absl::StrCat("gpus[", i, "]") : "gpu " + gpu.key;
    absl::Status s = ValidateGpuModel(gpu);
    if (!s.ok()) return Invalid(path, s.message());
    std::vector<std::string> names = {gpu.key};
    names.insert(names.end(), gpu.nvml_names.begin(), gpu.nvml_names.end());
    names.insert(names.end(), gpu.aliases.begin(), gpu.aliases.end());
    for (const std::string& name : names) {
      auto [it, inserted] = c.gpu_index_.emplace(Fold(name), i);
      if (!inserted && it->second != i) {
        return Invalid(path, absl::StrCat("name \"", name, "\" is already used by gpu ",
                                          c.data_.gpus[it->second].key));
      }
    }
  }
  for (size_t i = 0; i < c.data_.providers.size(); ++i) {
    const Provider& p = c.data_.providers[i];
    const std::string path =
        Fold(p.name).empty() ? absl::StrCat("providers[", i, "]") : "provider " + p.name;
    absl::Status s = ValidateProvider(p);
    if (!s.ok()) return Invalid(path, s.message());
    if (!c.provider_index_.emplace(Fold(p.name), i).second) {
      return Invalid(path, "listed twice");
    }
    for (size_t j = 0; j < p.prices.size(); ++j) {
      if (c.FindGpu(p.prices[j].gpu) == nullptr) {
        return Invalid(absl::StrCat(path, ": prices[", j, "].gpu"),
                       absl::StrCat("unknown GPU \"", p.prices[j].gpu, "\""));
      }
    }
  }
  if (c.data_.reference_gpu.empty()) return Invalid("reference_gpu", "missing");
  const GpuModel* ref = c.FindGpu(c.data_.reference_gpu);
  if (ref == nullptr) {
    return Invalid("reference_gpu", absl::StrCat("unknown GPU \"", c.data_.reference_gpu, "\""));
  }
  if (ref->relative_throughput != 1.0) {
    return Invalid("reference_gpu",
                   absl::StrFormat("%s has relative_throughput %g; the reference must have 1.0",
                                   ref->key, ref->relative_throughput));
  }
  c.reference_index_ = static_cast<size_t>(ref - c.data_.gpus.data());
  if (c.data_.upgrades.has_value()) {
    absl::Status s = ValidateUpgrades(*c.data_.upgrades);
    if (!s.ok()) return Invalid("upgrades", s.message());
    c.upgrades_ = *c.data_.upgrades;
  }
  return c;
}

const GpuModel* Catalog::FindGpu(absl::string_view name) const {
  auto it = gpu_index_.find(Fold(name));
  return it == gpu_index_.end() ? nullptr : &data_.gpus[it->second];
}

const Provider* Catalog::FindProvider(absl::string_view name) const {
  auto it = provider_index_.find(Fold(name));
  return it == provider_index_.end() ? nullptr : &data_.providers[it->second];
}

absl::StatusOr<PriceRange> Catalog::Price(absl::string_view provider, absl::string_view gpu,
                                          bool spot) const {
  const Provider* p = FindProvider(provider);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("unknown provider \"", provider, "\""));
  const GpuModel* model = FindGpu(gpu);
  if (model == nullptr) return absl::NotFoundError(absl::StrCat("unknown GPU \"", gpu, "\""));
  for (const GpuPrice& price : p->prices) {
    if (FindGpu(price.gpu) != model) continue;
    if (!spot) return price.on_demand;
    if (!p->offers_spot) {
      return absl::FailedPreconditionError(
          absl::StrCat(p->name, " offers no spot instances"));
    }
    if (price.spot.has_value()) return *price.spot;
    const double keep = 1 - p->spot_discount;
    return PriceRange{price.on_demand.min_usd_per_hour * keep,
                      price.on_demand.max_usd_per_hour * keep};
  }
  return absl::NotFoundError(absl::StrCat(p->name, " has no price for ", model->key));
}

}  // namespace sched::cost
