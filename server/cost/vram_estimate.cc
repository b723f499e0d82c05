#include "server/cost/vram_estimate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sched::cost {
namespace {

constexpr std::pair<Precision, absl::string_view> kPrecisions[] = {{Precision::kFp32, "fp32"},
                                                                   {Precision::kBf16, "bf16"},
                                                                   {Precision::kFp16, "fp16"},
                                                                   {Precision::kInt8, "int8"},
                                                                   {Precision::kInt4, "int4"}};
constexpr std::pair<TrainingMethod, absl::string_view> kMethods[] = {
    {TrainingMethod::kInference, "inference"},
    {TrainingMethod::kFullFineTune, "full"},
    {TrainingMethod::kLora, "lora"},
    {TrainingMethod::kQlora, "qlora"}};
constexpr std::pair<Optimizer, absl::string_view> kOptimizers[] = {
    {Optimizer::kAdamW, "adamw"}, {Optimizer::kAdamW8bit, "adamw-8bit"}, {Optimizer::kSgd, "sgd"}};

template <typename E, size_t N>
absl::StatusOr<E> FromName(const std::pair<E, absl::string_view> (&table)[N],
                           absl::string_view what, absl::string_view name) {
  const std::string folded = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  std::vector<absl::string_view> known;
  for (const auto& [value, n] : table) {
    if (n == folded) return value;
    known.push_back(n);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", what, " \"", name, "\" (known: ", absl::StrJoin(known, ", "), ")"));
}

template <typename E, size_t N>
absl::string_view ToName(const std::pair<E, absl::string_view> (&table)[N], E value) {
  for (const auto& [v, n] : table) {
    if (v == value) return n;
  }
  return "?";
}

// Bits a stored weight takes. int4 counts group-wise scales and the embeddings and output layer
// that 4-bit formats usually keep in 16 bits (GPTQ/AWQ with groups of 128: ~4.25 bits, plus
// those layers); QLoRA's NF4 with double quantization is the QLoRA paper's 4.127 bits.
double WeightBits(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return 32;
    case Precision::kBf16:
    case Precision::kFp16:
      return 16;
    case Precision::kInt8:
      return 8;
    case Precision::kInt4:
      return 4.5;
  }
  return 16;
}
constexpr double kNf4Bits = 4.127;

// Bytes of one activation or trained value: fp32 runs in 4, everything else computes in 16 bits.
double ComputeBytes(Precision p) { return p == Precision::kFp32 ? 4 : 2; }

// Optimizer state per trained parameter, moments only: AdamW keeps two fp32 moments, 8-bit
// AdamW two 8-bit ones, SGD one fp32 momentum buffer.
double MomentBytes(Optimizer o) {
  switch (o) {
    case Optimizer::kAdamW:
      return 8;
    case Optimizer::kAdamW8bit:
      return 2;
    case Optimizer::kSgd:
      return 4;
  }
  return 8;
}

// Per layer and per token, per unit of hidden size, the bytes a 16-bit forward pass keeps for
// backward with flash attention (Korthikanti et al. 2022: 34 + 5*a*s/h; flash attention drops
// the attention-score term).
constexpr double kActivationBytesPerLayerToken = 34;
// Llama-style block: 4 attention projections h x h, 3 MLP projections h x f with f = 2.6875 h.
constexpr double kMlpRatio = 2.6875;
// layers = cbrt(P / (12 * 128^2)), hidden = 128 * layers.
constexpr double kHiddenPerLayer = 128;
constexpr double kCudaContextBytes = 768.0 * 1024 * 1024;
constexpr double kAllocatorSlack = 0.05;

absl::Status Invalid(absl::string_view reason) { return absl::InvalidArgumentError(reason); }

int64_t Bytes(double b) { return static_cast<int64_t>(std::llround(b)); }

}  // namespace

absl::StatusOr<Precision> ParsePrecision(absl::string_view name) {
  return FromName(kPrecisions, "precision", name);
}
absl::StatusOr<TrainingMethod> ParseTrainingMethod(absl::string_view name) {
  return FromName(kMethods, "method", name);
}
absl::StatusOr<Optimizer> ParseOptimizer(absl::string_view name) {
  return FromName(kOptimizers, "optimizer", name);
}
absl::string_view PrecisionName(Precision p) { return ToName(kPrecisions, p); }
absl::string_view TrainingMethodName(TrainingMethod m) { return ToName(kMethods, m); }
absl::string_view OptimizerName(Optimizer o) { return ToName(kOptimizers, o); }

absl::StatusOr<VramEstimate> EstimateVram(const ModelDescription& m) {
  if (!(m.parameters >= 1e6 && m.parameters <= 1e14)) {
    return Invalid(absl::StrCat("parameters: expected between 1e6 and 1e14, got ", m.parameters));
  }
  if (m.batch_size < 1) return Invalid("batch_size: must be at least 1");
  if (m.sequence_length < 1) return Invalid("sequence_length: must be at least 1");
  if (m.hidden_size < 0) return Invalid("hidden_size: must be positive (or 0 to derive it)");
  if (m.layers < 0) return Invalid("layers: must be positive (or 0 to derive it)");
  if (m.vocab_size < 1) return Invalid("vocab_size: must be at least 1");
  if (m.lora_rank < 1) return Invalid("lora_rank: must be at least 1");
  const bool quantized = m.precision == Precision::kInt8 || m.precision == Precision::kInt4;
  if (m.method == TrainingMethod::kFullFineTune && quantized) {
    return Invalid(absl::StrCat("a full fine-tune cannot train ", PrecisionName(m.precision),
                                " weights: use fp32, bf16 or fp16, or qlora for a 4-bit base"));
  }

  const double p = m.parameters;
  VramEstimate e;
  double layers = static_cast<double>(m.layers);
  double hidden = static_cast<double>(m.hidden_size);
  if (layers == 0 && hidden == 0) {
    layers = std::max(1.0, std::round(std::cbrt(p / (12 * kHiddenPerLayer * kHiddenPerLayer))));
    hidden = kHiddenPerLayer * layers;
  } else if (layers == 0) {
    layers = std::max(1.0, std::round(p / (12 * hidden * hidden)));
  } else if (hidden == 0) {
    hidden = std::max(1.0, std::round(std::sqrt(p / (12 * layers))));
  }
  e.layers = static_cast<int64_t>(layers);
  e.hidden_size = static_cast<int64_t>(hidden);

  const double tokens = static_cast<double>(m.batch_size) * static_cast<double>(m.sequence_length);
  const double c = ComputeBytes(m.precision);
  const double vocab = static_cast<double>(m.vocab_size);
  double weights = 0, adapters = 0, gradients = 0, optimizer = 0, activations = 0;

  if (m.method == TrainingMethod::kInference) {
    weights = p * WeightBits(m.precision) / 8;
    // KV cache: a key and a value of `hidden` per token and layer (full multi-head attention),
    // and the prompt's fp32 logits.
    activations = 2 * layers * hidden * tokens * c + tokens * vocab * 4;
  } else {
    double trained = p;
    if (m.method == TrainingMethod::kFullFineTune) {
      weights = p * c;
      gradients = p * c;
      // Mixed precision keeps an fp32 master copy of the weights beside the moments.
      optimizer = p * (MomentBytes(m.optimizer) + (c == 2 ? 4 : 0));
    } else {
      weights = p * (m.method == TrainingMethod::kQlora ? kNf4Bits : WeightBits(m.precision)) / 8;
      trained = layers * static_cast<double>(m.lora_rank) * hidden * (8 + 3 * (1 + kMlpRatio));
      adapters = trained * c;
      gradients = trained * c;
      optimizer = trained * MomentBytes(m.optimizer);
    }
    e.trained_parameters = trained;
    const double per_layer = kActivationBytesPerLayerToken * tokens * hidden * (c / 2);
    // Checkpointing keeps each layer's input and recomputes one layer at a time.
    activations =
        m.gradient_checkpointing ? layers * tokens * hidden * c + per_layer : layers * per_layer;
    // Logits in fp32 and their gradient.
    activations += tokens * vocab * 8;
  }
  const double allocated = weights + adapters + gradients + optimizer + activations;
  // Past an exabyte the description is wrong, not the GPU too small, and the byte counts would
  // not fit their integers.
  const double overhead = kCudaContextBytes + kAllocatorSlack * allocated;
  if (!std::isfinite(allocated + overhead) || allocated + overhead > 1e18) {
    return Invalid(absl::StrCat(
        "the model as described needs over 1e18 bytes of GPU memory: check batch_size, "
        "sequence_length, hidden_size, layers, vocab_size and lora_rank"));
  }
  e.weights = Bytes(weights);
  e.adapters = Bytes(adapters);
  e.gradients = Bytes(gradients);
  e.optimizer_state = Bytes(optimizer);
  e.activations = Bytes(activations);
  e.overhead = Bytes(overhead);
  return e;
}

}  // namespace sched::cost
