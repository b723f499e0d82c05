#include "server/cost/vram_estimate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::cost {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Eq;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::Le;
using ::testing::Lt;

constexpr double kGB = 1e9;
constexpr double kGiB = 1024.0 * 1024 * 1024;

VramEstimate Estimate(const ModelDescription& m) {
  absl::StatusOr<VramEstimate> e = EstimateVram(m);
  EXPECT_THAT(e, IsOk());
  return e.value_or(VramEstimate{});
}

ModelDescription Llama2_7B() {
  ModelDescription m;
  m.parameters = 6.74e9;
  m.hidden_size = 4096;
  m.layers = 32;
  return m;
}

// Published: Llama-2-7B in fp16 holds 6.74e9 x 2 bytes = 13.5 GB of weights; its KV cache is
// 0.5 MiB a token (2 x 32 layers x 4096 x 2 bytes), 1 GiB for 2048 tokens.
TEST(VramEstimateTest, Llama2_7BFp16Inference) {
  ModelDescription m = Llama2_7B();
  m.precision = Precision::kFp16;
  VramEstimate e = Estimate(m);
  EXPECT_NEAR(e.weights, 13.5 * kGB, 0.02 * 13.5 * kGB);
  EXPECT_EQ(e.gradients, 0);
  EXPECT_EQ(e.optimizer_state, 0);
  EXPECT_EQ(e.adapters, 0);
  EXPECT_EQ(e.trained_parameters, 0);
  const double kv = 2.0 * 32 * 4096 * 2048 * 2;
  EXPECT_DOUBLE_EQ(kv, kGiB);
  EXPECT_EQ(e.activations, static_cast<int64_t>(kv + 2048.0 * 32000 * 4));
  // CUDA context 0.5-1 GB plus slack.
  EXPECT_GE(e.overhead, 0.5 * kGB);
  EXPECT_LE(e.overhead, 2 * kGB);
  // Fits a 24 GB card, not a 10 GB RTX 3080.
  EXPECT_LT(e.total(), 24 * kGiB);
  EXPECT_GT(e.total(), 10 * kGiB);
}

// Published (ZeRO paper, Rajbhandari et al. 2020): mixed-precision Adam needs 16 bytes per
// parameter (2 weights + 2 gradients + 12 fp32 master and moments): 112 GB for 7B, before
// activations.
TEST(VramEstimateTest, FullFineTune7BMixedPrecisionAdamWIs16BytesAParameter) {
  ModelDescription m;
  m.parameters = 7e9;
  m.method = TrainingMethod::kFullFineTune;
  VramEstimate e = Estimate(m);
  EXPECT_EQ(e.weights, 14'000'000'000);
  EXPECT_EQ(e.gradients, 14'000'000'000);
  EXPECT_EQ(e.optimizer_state, 84'000'000'000);
  EXPECT_EQ(e.weights + e.gradients + e.optimizer_state, 112'000'000'000);
  EXPECT_EQ(e.trained_parameters, 7e9);
  EXPECT_GT(e.activations, 0);
  EXPECT_THAT(e.total(), AllOf(Gt(112 * kGB), Lt(140 * kGB)));
}

TEST(VramEstimateTest, OptimizerAndPrecisionChangeTheStatePerParameter) {
  ModelDescription m;
  m.parameters = 1e9;
  m.method = TrainingMethod::kFullFineTune;
  m.optimizer = Optimizer::kAdamW8bit;
  EXPECT_EQ(Estimate(m).optimizer_state, 6'000'000'000);  // fp32 master 4 + two 8-bit moments
  m.optimizer = Optimizer::kSgd;
  EXPECT_EQ(Estimate(m).optimizer_state, 8'000'000'000);  // master 4 + momentum 4
  m.precision = Precision::kFp32;
  m.optimizer = Optimizer::kAdamW;
  VramEstimate e = Estimate(m);  // no master copy: the weights are fp32 already
  EXPECT_EQ(e.weights + e.gradients + e.optimizer_state, 16'000'000'000);
  EXPECT_EQ(e.optimizer_state, 8'000'000'000);
}

// Published: QLoRA (Dettmers et al. 2023) fine-tunes 7B models in ~5-10 GB, so a 16 GB card
// is enough.
TEST(VramEstimateTest, QLora7BFitsA16GBCard) {
  ModelDescription m;
  m.parameters = 7e9;
  m.method = TrainingMethod::kQlora;
  m.gradient_checkpointing = true;
  VramEstimate e = Estimate(m);
  EXPECT_NEAR(e.weights, 7e9 * 4.127 / 8, 1e6);
  EXPECT_THAT(e.total(), AllOf(Ge(5 * kGB), Le(10 * kGB)));
  EXPECT_LT(e.total(), 16 * kGiB);
  EXPECT_GT(e.adapters, 0);
  EXPECT_LT(e.trained_parameters, 0.01 * 7e9);  // adapters are well under 1% of the model
}

// Published: the QLoRA paper fine-tunes LLaMA-65B (h 8192, 80 layers) with r = 64 adapters on
// every linear layer on one 48 GB GPU; its adapters are ~800M parameters (Guanaco-65B's
// adapter file is ~3.2 GB in fp32).
TEST(VramEstimateTest, QLora65BFitsA48GBCard) {
  ModelDescription m;
  m.parameters = 65.2e9;
  m.hidden_size = 8192;
  m.layers = 80;
  m.method = TrainingMethod::kQlora;
  m.lora_rank = 64;
  m.sequence_length = 512;
  m.gradient_checkpointing = true;
  VramEstimate e = Estimate(m);
  EXPECT_NEAR(e.trained_parameters, 800e6, 0.05 * 800e6);
  EXPECT_THAT(e.total(), AllOf(Gt(40 * kGB), Le(48 * kGiB)));
}

// Published: a 70B model quantized to 4 bits needs ~35-40 GB for its weights.
TEST(VramEstimateTest, Int4Inference70BWeights) {
  ModelDescription m;
  m.parameters = 70e9;
  m.precision = Precision::kInt4;
  VramEstimate e = Estimate(m);
  EXPECT_THAT(static_cast<double>(e.weights), AllOf(Ge(35 * kGB), Le(40 * kGB)));
  EXPECT_GT(e.total(), e.weights);
  m.precision = Precision::kInt8;
  EXPECT_EQ(Estimate(m).weights, 70'000'000'000);
}

TEST(VramEstimateTest, GradientCheckpointingCutsActivations) {
  ModelDescription m = Llama2_7B();
  m.method = TrainingMethod::kLora;
  const VramEstimate plain = Estimate(m);
  m.gradient_checkpointing = true;
  const VramEstimate ckpt = Estimate(m);
  // 32 layers x 34 bytes vs 32 x 2 + 34 bytes per token and hidden unit.
  const double logits = 2048.0 * 32000 * 8;
  EXPECT_NEAR((plain.activations - logits) / (ckpt.activations - logits), 32.0 * 34 / (64 + 34),
              0.01);
  EXPECT_EQ(plain.weights, ckpt.weights);
  // LoRA over a bf16 7B at 2048 tokens: checkpointing saves ~8 GB and leaves room on 24 GB.
  EXPECT_GT(plain.total() - ckpt.total(), 7 * kGB);
  EXPECT_LT(ckpt.total(), 20 * kGB);
}

TEST(VramEstimateTest, ActivationsScaleWithBatchAndSequence) {
  ModelDescription m = Llama2_7B();
  m.method = TrainingMethod::kFullFineTune;
  const int64_t one = Estimate(m).activations;
  m.batch_size = 4;
  EXPECT_EQ(Estimate(m).activations, 4 * one);
  m.batch_size = 1;
  m.sequence_length = 4096;
  EXPECT_EQ(Estimate(m).activations, 2 * one);
}

TEST(VramEstimateTest, DerivesTheShapeFromTheParameterCount) {
  ModelDescription m;
  m.parameters = 7e9;
  VramEstimate e = Estimate(m);
  EXPECT_EQ(e.layers, 33);
  EXPECT_EQ(e.hidden_size, 33 * 128);
  m.hidden_size = 4096;  // layers from P = 12 L h^2
  EXPECT_EQ(Estimate(m).layers, 35);
  m.hidden_size = 0;
  m.layers = 32;
  EXPECT_EQ(Estimate(m).hidden_size, 4270);
}

TEST(VramEstimateTest, LoraAdaptersFollowRankAndPrecision) {
  ModelDescription m = Llama2_7B();
  m.method = TrainingMethod::kLora;
  m.lora_rank = 8;
  const VramEstimate r8 = Estimate(m);
  // 32 layers x 8 x 4096 x (4 x 2 + 3 x (1 + 2.6875)) = 19.99M adapter parameters.
  EXPECT_NEAR(r8.trained_parameters, 19.99e6, 0.01e6);
  EXPECT_EQ(r8.adapters, static_cast<int64_t>(r8.trained_parameters * 2));
  EXPECT_EQ(r8.optimizer_state, static_cast<int64_t>(r8.trained_parameters * 8));
  m.lora_rank = 16;
  EXPECT_NEAR(Estimate(m).trained_parameters, 2 * r8.trained_parameters, 1);
  m.precision = Precision::kInt8;  // LoRA over an 8-bit base
  EXPECT_EQ(Estimate(m).weights, 6'740'000'000);
}

TEST(VramEstimateTest, Names) {
  EXPECT_THAT(ParsePrecision("BF16"), IsOkAndHolds(Precision::kBf16));
  EXPECT_THAT(ParseTrainingMethod("qlora"), IsOkAndHolds(TrainingMethod::kQlora));
  EXPECT_THAT(ParseOptimizer("adamw-8bit"), IsOkAndHolds(Optimizer::kAdamW8bit));
  EXPECT_EQ(PrecisionName(Precision::kInt4), "int4");
  EXPECT_EQ(TrainingMethodName(TrainingMethod::kFullFineTune), "full");
  EXPECT_EQ(OptimizerName(Optimizer::kSgd), "sgd");
  EXPECT_THAT(ParsePrecision("fp8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("unknown precision \"fp8\" (known: fp32, bf16, fp16, int8, int4)")));
  EXPECT_THAT(ParseTrainingMethod("dpo"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("unknown method \"dpo\" (known: inference, full, lora, qlora)")));
  EXPECT_THAT(ParseOptimizer("lion"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("unknown optimizer \"lion\" (known: adamw, adamw-8bit, sgd)")));
}

TEST(VramEstimateTest, Errors) {
  auto error = [](void (*mutate)(ModelDescription*)) {
    ModelDescription m;
    m.parameters = 7e9;
    mutate(&m);
    return EstimateVram(m).status();
  };
  EXPECT_THAT(error([](ModelDescription* m) { m->parameters = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("parameters: expected between 1e6 and 1e14, got 0")));
  EXPECT_THAT(error([](ModelDescription* m) { m->batch_size = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("batch_size: must be at least 1")));
  EXPECT_THAT(
      error([](ModelDescription* m) { m->sequence_length = -1; }),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("sequence_length: must be at least 1")));
  EXPECT_THAT(error([](ModelDescription* m) { m->hidden_size = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("hidden_size: must be positive (or 0 to derive it)")));
  EXPECT_THAT(error([](ModelDescription* m) { m->layers = -1; }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("layers: must be positive (or 0 to derive it)")));
  EXPECT_THAT(error([](ModelDescription* m) { m->vocab_size = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("vocab_size: must be at least 1")));
  EXPECT_THAT(error([](ModelDescription* m) { m->lora_rank = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("lora_rank: must be at least 1")));
  EXPECT_THAT(error([](ModelDescription* m) {
                m->method = TrainingMethod::kFullFineTune;
                m->precision = Precision::kInt4;
              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("a full fine-tune cannot train int4 weights: use fp32, bf16 or fp16, "
                          "or qlora for a 4-bit base")));
}

}  // namespace
}  // namespace sched::cost

namespace sched::cost {
namespace {

// Found by fuzzing: sizes so large the byte counts overflowed their integers.
TEST(VramEstimateTest, ADescriptionNeedingOverAnExabyteIsRefusedNotOverflowed) {
  ModelDescription m = Llama2_7B();
  m.batch_size = int64_t{1} << 40;
  m.sequence_length = int64_t{1} << 40;
  absl::StatusOr<VramEstimate> e = EstimateVram(m);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr("over 1e18 bytes"));
  m = Llama2_7B();
  m.hidden_size = INT64_MAX;
  m.layers = INT64_MAX;
  EXPECT_EQ(EstimateVram(m).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sched::cost
