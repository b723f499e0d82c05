#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/cost/catalog.h"

namespace sched::cost {

// How long a job runs on some GPUs, from a runtime given for other GPUs or from the job's past
// runs, scaled by the catalog's relative throughput (docs/cost-model.md). Estimates: two GPUs
// with the same throughput figure can differ by a third on one job.

// GPUs a run had or a job would get: `count` cards of `model` (a catalog key, NVML name or
// alias), or CPU only (empty model, count 0).
struct GpuAllocation {
  std::string model;
  int32_t count = 0;

  bool cpu_only() const { return model.empty() && count == 0; }
};

struct RuntimeOptions {
  // Data-parallel scaling: each doubling of the GPU count keeps this fraction of the ideal
  // speed-up, so n GPUs run n * efficiency^log2(n) times one GPU (2 -> 1.8, 4 -> 3.24,
  // 8 -> 5.83 at 0.9). Must be in (0, 1].
  double multi_gpu_efficiency = 0.9;
};

// Throughput of `count` GPUs that each do `per_gpu`, with the data-parallel efficiency of
// `options`: per_gpu * count * efficiency^log2(count).
double ScaledThroughput(double per_gpu, int32_t count, const RuntimeOptions& options = {});

// Throughput of `gpus` relative to one reference GPU. INVALID_ARGUMENT for CPU only, a count
// below 1 or a bad efficiency; NOT_FOUND for a model the catalog does not know.
absl::StatusOr<double> AllocationThroughput(const Catalog& catalog, const GpuAllocation& gpus,
                                            const RuntimeOptions& options = {});

// `runtime` measured or guessed on `from`, scaled to `to`. Both must be GPUs (a CPU-only
// runtime says nothing about a GPU's and back): INVALID_ARGUMENT otherwise, and for a runtime
// that is not positive and finite; NOT_FOUND for a GPU model the catalog does not know.
absl::StatusOr<absl::Duration> ScaleRuntime(const Catalog& catalog, absl::Duration runtime,
                                            const GpuAllocation& from, const GpuAllocation& to,
                                            const RuntimeOptions& options = {});

// One finished, successful run of a job.
struct PastRun {
  GpuAllocation gpus;
  absl::Duration duration;
};

struct HistoryEstimate {
  absl::Duration runtime;
  int runs_used = 0;     // how many runs the median rests on
  int runs_skipped = 0;  // runs that could not be compared with the target
};

// The runtime on `target` learned from past runs of one job (the caller passes the runs of
// one (project, name)): for a GPU target, the median over the runs on GPUs the catalog knows of
// duration x the run's throughput, divided by the target's throughput; for a CPU-only target,
// the median duration of the CPU-only runs. Other runs, and runs with a duration that is not
// positive, are skipped. NOT_FOUND when no run is usable; the errors of AllocationThroughput
// for a bad target.
absl::StatusOr<HistoryEstimate> EstimateFromHistory(const Catalog& catalog,
                                                    absl::Span<const PastRun> runs,
                                                    const GpuAllocation& target,
                                                    const RuntimeOptions& options = {});

enum class RuntimeBasis { kGiven, kHistory };

struct RuntimeEstimate {
  absl::Duration runtime;
  RuntimeBasis basis = RuntimeBasis::kGiven;
  int runs_used = 0;  // kHistory only
};

// A runtime given in the job spec for `given_on` (scaled; a spec that names no GPU means the
// catalog's reference_gpu(), which the caller fills in) wins over history; without one, the
// history's. A runtime given for CPU only applies to a CPU-only target as it is. NOT_FOUND when there is neither; the errors of ScaleRuntime for a given runtime
// that cannot be scaled.
absl::StatusOr<RuntimeEstimate> EstimateRuntime(const Catalog& catalog,
                                                std::optional<absl::Duration> given,
                                                const GpuAllocation& given_on,
                                                absl::Span<const PastRun> history,
                                                const GpuAllocation& target,
                                                const RuntimeOptions& options = {});

}  // namespace sched::cost
