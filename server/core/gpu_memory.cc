#include "server/core/gpu_memory.h"

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/cost/vram_estimate.h"

namespace sched {

absl::Status EstimateGpuMemory(JobSpec& spec) {
  Resources& r = spec.resources;
  const ModelDescription& m = spec.model;
  r.gpu_memory_estimated = false;  // output only: what a client says of it does not count
  if (m.parameters == 0 || r.gpus == 0 || r.gpu_memory_bytes > 0) return absl::OkStatus();
  cost::ModelDescription d;
  d.parameters = static_cast<double>(m.parameters);
  auto field = [](absl::Status s) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", s.message()));
  };
  if (!m.precision.empty()) {
    absl::StatusOr<cost::Precision> p = cost::ParsePrecision(m.precision);
    if (!p.ok()) return field(p.status());
    d.precision = *p;
  }
  if (!m.method.empty()) {
    absl::StatusOr<cost::TrainingMethod> t = cost::ParseTrainingMethod(m.method);
    if (!t.ok()) return field(t.status());
    d.method = *t;
  }
  if (!m.optimizer.empty()) {
    absl::StatusOr<cost::Optimizer> o = cost::ParseOptimizer(m.optimizer);
    if (!o.ok()) return field(o.status());
    d.optimizer = *o;
  }
  if (m.batch_size != 0) d.batch_size = m.batch_size;
  if (m.sequence_length != 0) d.sequence_length = m.sequence_length;
  if (m.lora_rank != 0) d.lora_rank = m.lora_rank;
  d.gradient_checkpointing = m.gradient_checkpointing;
  absl::StatusOr<cost::VramEstimate> estimate = cost::EstimateVram(d);
  if (!estimate.ok()) return field(estimate.status());
  r.gpu_memory_bytes = estimate->total();
  r.gpu_memory_estimated = true;
  return absl::OkStatus();
}

}  // namespace sched
