#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
//   model: {parameters: 7B, precision: bf16, method: qlora, batch_size: 4,
//           sequence_length: 2048, gradient_checkpointing: true, optimizer: adamw, lora_rank: 16}
//   runtime: {duration: 3h, gpu_model: a100-80gb}   # or just "runtime: 3h" (reference GPU)
//   deadline: 2026-11-27T08:00:00Z                  # or a duration from now: "12h"
//   max_cost: 5.00                                  # dollars
//   placement: prefer-local     # local-only | prefer-local | cheapest | cloud-only
//   spot: auto                  # auto | spot | on-demand
//
// Sizes follow ParseByteSize. Errors are INVALID_ARGUMENT naming the key path and the reason
// ("resources.gpus: expected a non-negative integer, got \"two\""); YAML syntax errors give the
// line and column. Deeper checks (name charset, env names) are the server's. A relative deadline
// counts from `now`.
absl::StatusOr<sched::v1::JobSpec> ParseJobSpecYaml(std::string_view yaml,
                                                    absl::Time now = absl::Now());

}  // namespace sched::client
