#include "server/cost/runtime_estimate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace sched::cost {
namespace {

bool PositiveFinite(absl::Duration d) {
  return d > absl::ZeroDuration() && d < absl::InfiniteDuration();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

double ScaledThroughput(double per_gpu, int32_t count, const RuntimeOptions& options) {
  const double n = count;
  return per_gpu * n * std::pow(options.multi_gpu_efficiency, std::log2(n));
}

absl::StatusOr<double> AllocationThroughput(const Catalog& catalog, const GpuAllocation& gpus,
                                            const RuntimeOptions& options) {
  if (!(options.multi_gpu_efficiency > 0 && options.multi_gpu_efficiency <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "multi_gpu_efficiency: must be in (0, 1], got ", options.multi_gpu_efficiency));
  }
  if (gpus.model.empty()) return absl::InvalidArgumentError("no GPU model: CPU only");
  if (gpus.count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPU count for ", gpus.model, ": must be at least 1, got ", gpus.count));
  }
  const GpuModel* model = catalog.FindGpu(gpus.model);
  if (model == nullptr) {
    return absl::NotFoundError(absl::StrCat("GPU \"", gpus.model, "\" is not in the catalog"));
  }
  return ScaledThroughput(model->relative_throughput, gpus.count, options);
}

absl::StatusOr<absl::Duration> ScaleRuntime(const Catalog& catalog, absl::Duration runtime,
                                            const GpuAllocation& from, const GpuAllocation& to,
                                            const RuntimeOptions& options) {
  if (!PositiveFinite(runtime)) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtime: must be positive, got ", absl::FormatDuration(runtime)));
  }
  if (from.cpu_only() || to.cpu_only()) {
    return absl::InvalidArgumentError(
        "cannot scale a runtime between CPU-only and GPU runs: the catalog compares GPUs only");
  }
  SCHED_ASSIGN_OR_RETURN(double from_speed, AllocationThroughput(catalog, from, options));
  SCHED_ASSIGN_OR_RETURN(double to_speed, AllocationThroughput(catalog, to, options));
  return runtime * (from_speed / to_speed);
}

absl::StatusOr<HistoryEstimate> EstimateFromHistory(const Catalog& catalog,
                                                    absl::Span<const PastRun> runs,
                                                    const GpuAllocation& target,
                                                    const RuntimeOptions& options) {
  const bool cpu_target = target.cpu_only();
  double target_speed = 1;
  if (!cpu_target) {
    SCHED_ASSIGN_OR_RETURN(target_speed, AllocationThroughput(catalog, target, options));
  }
  // Seconds on one reference GPU for a GPU target; plain seconds for a CPU-only one.
  std::vector<double> normalized;
  HistoryEstimate e;
  for (const PastRun& run : runs) {
    double speed = 1;
    bool usable = PositiveFinite(run.duration) && run.gpus.cpu_only() == cpu_target;
    if (usable && !cpu_target) {
      absl::StatusOr<double> s = AllocationThroughput(catalog, run.gpus, options);
      usable = s.ok();
      speed = s.value_or(0);
    }
    if (!usable) {
      ++e.runs_skipped;
      continue;
    }
    normalized.push_back(absl::ToDoubleSeconds(run.duration) * speed);
  }
  if (normalized.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no past run to learn from (", e.runs_skipped, " run(s) ",
                     cpu_target ? "had GPUs" : "were CPU-only or on GPUs the catalog lacks",
                     ")"));
  }
  e.runs_used = static_cast<int>(normalized.size());
  e.runtime = absl::Seconds(Median(std::move(normalized)) / target_speed);
  return e;
}

absl::StatusOr<RuntimeEstimate> EstimateRuntime(const Catalog& catalog,
                                                std::optional<absl::Duration> given,
                                                const GpuAllocation& given_on,
                                                absl::Span<const PastRun> history,
                                                const GpuAllocation& target,
                                                const RuntimeOptions& options) {
  RuntimeEstimate e;
  if (given.has_value()) {
    // Same allocation (CPU only included): nothing to scale.
    if (given_on.model == target.model && given_on.count == target.count) {
      e.runtime = *given;
      if (!PositiveFinite(e.runtime)) {
        return absl::InvalidArgumentError(
            absl::StrCat("runtime: must be positive, got ", absl::FormatDuration(*given)));
      }
      return e;
    }
    SCHED_ASSIGN_OR_RETURN(e.runtime, ScaleRuntime(catalog, *given, given_on, target, options));
    return e;
  }
  SCHED_ASSIGN_OR_RETURN(HistoryEstimate h, EstimateFromHistory(catalog, history, target, options));
  e.runtime = h.runtime;
  e.basis = RuntimeBasis::kHistory;
  e.runs_used = h.runs_used;
  return e;
}

}  // namespace sched::cost
