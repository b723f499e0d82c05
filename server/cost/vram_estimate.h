#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sched::cost {

// How much GPU memory a transformer job needs, from a description of the model and the run.
// The formula and the published figures it was checked against are in docs/cost-model.md.
// An estimate: expect +-20% against a real run; frameworks, attention kernels and allocator
// behaviour move it.

enum class Precision { kFp32, kBf16, kFp16, kInt8, kInt4 };
enum class TrainingMethod { kInference, kFullFineTune, kLora, kQlora };
enum class Optimizer { kAdamW, kAdamW8bit, kSgd };

// Names as job specs write them ("bf16", "qlora", "adamw-8bit"); INVALID_ARGUMENT naming the
// accepted values otherwise. Case is ignored.
absl::StatusOr<Precision> ParsePrecision(absl::string_view name);
absl::StatusOr<TrainingMethod> ParseTrainingMethod(absl::string_view name);
absl::StatusOr<Optimizer> ParseOptimizer(absl::string_view name);
absl::string_view PrecisionName(Precision p);
absl::string_view TrainingMethodName(TrainingMethod m);
absl::string_view OptimizerName(Optimizer o);

struct ModelDescription {
  double parameters = 0;  // total parameter count, e.g. 7e9
  // Weights' precision. For training, the compute precision (bf16/fp16 = mixed precision with
  // fp32 master weights for a full fine-tune). QLoRA stores the base in 4-bit NF4 whatever
  // this says; its adapters compute in this precision (bf16 when int8/int4 is given).
  Precision precision = Precision::kBf16;
  TrainingMethod method = TrainingMethod::kInference;
  Optimizer optimizer = Optimizer::kAdamW;
  int64_t batch_size = 1;
  int64_t sequence_length = 2048;
  // Model shape; 0 = derived from `parameters` (layers = cbrt(P / 196608), hidden = 128 x
  // layers: the shape of Llama-7B/13B and GPT-3, where P ~ 12 x layers x hidden^2).
  int64_t hidden_size = 0;
  int64_t layers = 0;
  int64_t vocab_size = 32000;
  int64_t lora_rank = 16;  // LoRA / QLoRA: adapters on every linear layer of each block
  bool gradient_checkpointing = false;
};

// Bytes, by what holds them. total() is the figure to compare with a GPU's memory.
struct VramEstimate {
  int64_t weights = 0;          // model weights (the frozen base for LoRA/QLoRA)
  int64_t adapters = 0;         // LoRA/QLoRA adapter weights
  int64_t gradients = 0;        // of what is trained
  int64_t optimizer_state = 0;  // optimizer moments, and fp32 master weights when mixed
  int64_t activations = 0;      // training: saved activations and logits; inference: KV cache
  int64_t overhead = 0;         // CUDA context, library workspaces, allocator slack
  // The shape used (given, or derived from the parameter count).
  int64_t hidden_size = 0;
  int64_t layers = 0;
  double trained_parameters = 0;  // all for a full fine-tune, the adapters' for LoRA, 0 else

  int64_t total() const {
    return weights + adapters + gradients + optimizer_state + activations + overhead;
  }
};

// INVALID_ARGUMENT for a description that cannot run: no parameters, a batch, sequence, shape,
// vocabulary or rank below 1 (the shape may be 0 = derived), a full fine-tune of int8/int4
// weights (use LoRA over a quantized base: qlora).
absl::StatusOr<VramEstimate> EstimateVram(const ModelDescription& model);

}  // namespace sched::cost
