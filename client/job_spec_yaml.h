#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "sched/v1/types.pb.h"

namespace sched::client {

// Parses job.yaml into the API's JobSpec:
//
//   name: train-7b            # optional
//   project: llm              # optional
//   setup: pip install -r requirements.txt
//   run: python train.py      # required
//   env: {WANDB_MODE: offline, EPOCHS: 3}       # scalar values become strings
//   resources: {gpus: 1, gpu_memory: 24GB, gpu_model: [H100, A100], cpus: 0.5, memory: 8GB}
//   priority: 10
//   labels: {team: nlp}
//
// Sizes follow ParseByteSize. Errors are INVALID_ARGUMENT naming the key path and the reason
// ("resources.gpus: expected a non-negative integer, got \"two\""); YAML syntax errors give the
// line and column. Deeper checks (name charset, env names) are the server's.
absl::StatusOr<sched::v1::JobSpec> ParseJobSpecYaml(std::string_view yaml);

}  // namespace sched::client
