#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

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

// A pipeline file: named stages, each a job spec, run in a chain.
//
//   pipeline: finetune          # labels every stage's job pipeline=finetune
//   project: ml                 # for stages that name none
//   stages:
//     - name: prepare           # required; labels the job stage=prepare
//       run: python prep.py
//       placement: local-only
//       outputs: [data/]
//     - name: train             # after: the stage before it (success), unless it says
//       inputs: [prepare]       # its outputs in $SCHED_INPUTS_DIR/prepare; implies after
//       resources: {gpus: 1, gpu_memory: 24GB}
//     - name: evaluate
//       after: [{job: train, when: always}]
//       inputs: [prepare]
//
// In `after` and `inputs` the stages are named, and only earlier ones; the specs keep the names
// until ResolveStages puts the submitted jobs' ids in their place.
struct PipelineStage {
  std::string name;
  sched::v1::JobSpec spec;
};
struct Pipeline {
  std::string name;
  std::vector<PipelineStage> stages;
};
bool IsPipelineYaml(std::string_view yaml);
absl::StatusOr<Pipeline> ParsePipelineYaml(std::string_view yaml, absl::Time now = absl::Now());
// The stage names in `spec`'s after and inputs replaced by the ids in `ids`; NOT_FOUND for a
// stage not there.
absl::Status ResolveStages(sched::v1::JobSpec& spec, const std::map<std::string, std::string>& ids);

}  // namespace sched::client
