#include "client/job_spec_yaml.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace sched::client {
namespace {

using ::sched::testing::IsOk;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kFullSpec[] = R"(
name: train-7b
project: llm
setup: |
  pip install -r requirements.txt
run: python train.py --epochs 3
env:
  WANDB_MODE: offline
  EPOCHS: 3
  DEBUG: true
  RATE: 0.5
  EMPTY:
resources:
  gpus: 2
  gpu_memory: 24GB
  gpu_model: [H100, A100]
  cpus: 0.5
  memory: 8GiB
priority: -10
labels:
  team: nlp
  sweep: 42
)";

TEST(ParseJobSpecYaml, ReadsEveryField) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(kFullSpec);
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->name(), "train-7b");
  EXPECT_EQ(spec->project(), "llm");
  EXPECT_EQ(spec->setup(), "pip install -r requirements.txt\n");
  EXPECT_EQ(spec->run(), "python train.py --epochs 3");
  ASSERT_EQ(spec->env_size(), 5);
  const std::vector<std::pair<std::string, std::string>> env = {{"WANDB_MODE", "offline"},
                                                                {"EPOCHS", "3"},
                                                                {"DEBUG", "true"},
                                                                {"RATE", "0.5"},
                                                                {"EMPTY", ""}};
  for (int i = 0; i < spec->env_size(); ++i) {
    EXPECT_EQ(spec->env(i).name(), env[i].first) << i;
    EXPECT_EQ(spec->env(i).value(), env[i].second) << i;
  }
  const sched::v1::Resources& r = spec->resources();
  EXPECT_EQ(r.gpus(), 2u);
  EXPECT_EQ(r.gpu_memory_bytes(), 24'000'000'000);
  EXPECT_THAT(r.gpu_models(), ElementsAre("H100", "A100"));
  EXPECT_DOUBLE_EQ(r.cpus(), 0.5);
  EXPECT_EQ(r.memory_bytes(), int64_t{8} << 30);
  EXPECT_EQ(spec->priority(), -10);
  EXPECT_THAT(spec->labels(), UnorderedElementsAre(Pair("team", "nlp"), Pair("sweep", "42")));
}

TEST(ParseJobSpecYaml, ReadsTheCostFields) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(R"(
run: python train.py
model:
  parameters: 1.5B
  precision: int4
  method: qlora
  optimizer: adamw-8bit
  batch_size: 4
  sequence_length: 4096
  gradient_checkpointing: true
  lora_rank: 64
runtime: {duration: 2h30m, gpu_model: a100-80gb}
deadline: 12h
max_cost: $7.50
placement: cheapest
spot: on-demand
)",
                                                             now);
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->model().parameters(), 1'500'000'000);
  EXPECT_EQ(spec->model().precision(), "int4");
  EXPECT_EQ(spec->model().method(), "qlora");
  EXPECT_EQ(spec->model().optimizer(), "adamw-8bit");
  EXPECT_EQ(spec->model().batch_size(), 4u);
  EXPECT_EQ(spec->model().sequence_length(), 4096u);
  EXPECT_TRUE(spec->model().gradient_checkpointing());
  EXPECT_EQ(spec->model().lora_rank(), 64u);
  EXPECT_EQ(spec->runtime().seconds(), 9000);
  EXPECT_EQ(spec->runtime().gpu_model(), "a100-80gb");
  EXPECT_EQ(spec->deadline().seconds(), 1'800'000'000 + 12 * 3600);
  EXPECT_DOUBLE_EQ(spec->max_cost(), 7.5);
  EXPECT_EQ(spec->placement(), sched::v1::PLACEMENT_POLICY_CHEAPEST);
  EXPECT_EQ(spec->spot(), sched::v1::SPOT_POLICY_ON_DEMAND);

  spec = ParseJobSpecYaml(
      "run: x\nruntime: 45m\ndeadline: 2026-11-27T08:00:00Z\n"
      "model: {parameters: 7000000000}\n");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->runtime().seconds(), 2700);
  EXPECT_TRUE(spec->runtime().gpu_model().empty());
  EXPECT_EQ(spec->deadline().seconds(), 1795737600 + 8 * 3600);
  EXPECT_EQ(spec->model().parameters(), 7'000'000'000);
}

TEST(ParseJobSpecYaml, OnlyRunIsRequired) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml("run: echo hi\n");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->run(), "echo hi");
  EXPECT_EQ(spec->name(), "");
  EXPECT_FALSE(spec->has_resources());
  EXPECT_EQ(spec->priority(), 0);
}

TEST(ParseJobSpecYaml, TakesOneGpuModelAsAScalar) {
  absl::StatusOr<sched::v1::JobSpec> spec =
      ParseJobSpecYaml("run: x\nresources: {gpus: 1, gpu_model: H100, cpus: 2}\n");
  ASSERT_THAT(spec, IsOk());
  EXPECT_THAT(spec->resources().gpu_models(), ElementsAre("H100"));
  EXPECT_DOUBLE_EQ(spec->resources().cpus(), 2.0);
}

struct BadSpec {
  const char* yaml;
  const char* message;
};

class BadSpecTest : public ::testing::TestWithParam<BadSpec> {};

TEST_P(BadSpecTest, NamesTheKeyPathAndReason) {
  EXPECT_THAT(ParseJobSpecYaml(GetParam().yaml),
              StatusIs(absl::StatusCode::kInvalidArgument, GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    UnknownKeys, BadSpecTest,
    ::testing::Values(
        BadSpec{"run: x\nresources:\n  gpu_memry: 24GB\n",
                "resources.gpu_memry: unknown key (expected one of: gpus, gpu_memory, gpu_model, "
                "cpus, memory, share_gpu)"},
        BadSpec{
            "run: x\nnmae: a\n",
            "nmae: unknown key (expected one of: name, project, run, setup, env, secrets, "
            "resources, priority, labels, model, runtime, deadline, max_cost, placement, spot, "
            "retry, max_duration, not_before, sweep, after, outputs, inputs)"},
        BadSpec{"run: x\nmodel: {parameters: 7B, precison: bf16}\n",
                "model.precison: unknown key (expected one of: parameters, precision, method, "
                "optimizer, batch_size, sequence_length, gradient_checkpointing, lora_rank)"}));

INSTANTIATE_TEST_SUITE_P(
    BadCostFields, BadSpecTest,
    ::testing::Values(
        BadSpec{"run: x\nmodel: {parameters: lots}\n",
                "model.parameters: expected a parameter count such as 7B, 1.5B or 350M, got "
                "\"lots\""},
        BadSpec{"run: x\nmodel: {parameters: 0.5}\n",
                "model.parameters: expected a parameter count such as 7B, 1.5B or 350M, got "
                "\"0.5\""},
        BadSpec{"run: x\nmodel: {method: qlora}\n", "model.parameters: required"},
        BadSpec{"run: x\nmodel: {parameters: 7B, batch_size: 0}\n",
                "model.batch_size: must be in 1..4294967295, got 0"},
        BadSpec{"run: x\nmodel: {parameters: 7B, gradient_checkpointing: maybe}\n",
                "model.gradient_checkpointing: expected true or false, got \"maybe\""},
        BadSpec{"run: x\nruntime: soon\n",
                "runtime: expected a positive duration such as 90m or 2h30m, got \"soon\""},
        BadSpec{"run: x\nruntime: {gpu_model: a100}\n", "runtime.duration: required"},
        BadSpec{"run: x\ndeadline: tomorrow\n",
                "deadline: expected a time such as 2026-11-27T08:00:00Z or a duration from now "
                "such as 12h, got \"tomorrow\""},
        BadSpec{"run: x\nmax_cost: -3\n",
                "max_cost: expected an amount in dollars such as 5 or 12.50, got \"-3\""},
        BadSpec{"run: x\nplacement: nearby\n",
                "placement: expected local-only, prefer-local, cheapest, cloud-only, got "
                "\"nearby\""},
        BadSpec{"run: x\nspot: sometimes\n",
                "spot: expected auto, spot, on-demand, got \"sometimes\""}));

TEST(ParseJobSpecYaml, ReadsRetriesAndLimits) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(R"(
run: python train.py
retry:
  max_restarts: 3
  exit_codes: [3, 137]
  backoff: 30s
  max_backoff: 5m
max_duration: 6h
not_before: 2h
)",
                                                             now);
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->retry().max_restarts(), 3u);
  EXPECT_THAT(spec->retry().exit_codes(), ElementsAre(3, 137));
  EXPECT_EQ(spec->retry().backoff_seconds(), 30);
  EXPECT_EQ(spec->retry().max_backoff_seconds(), 300);
  EXPECT_EQ(spec->max_duration_seconds(), 6 * 3600);
  EXPECT_EQ(spec->not_before().seconds(), 1'800'000'000 + 2 * 3600);

  // The short forms: a count of restarts on any failure, one exit code, a time of day.
  spec = ParseJobSpecYaml(
      "run: x\nretry: 2\nnot_before: 2026-11-27T22:00:00Z\n", now);
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->retry().max_restarts(), 2u);
  EXPECT_EQ(spec->retry().exit_codes_size(), 0);
  EXPECT_EQ(spec->retry().backoff_seconds(), 0);  // schedd's default
  EXPECT_EQ(spec->not_before().seconds(), 1795737600 + 22 * 3600);
  spec = ParseJobSpecYaml("run: x\nretry: {max_restarts: 1, exit_codes: 75}\n", now);
  ASSERT_THAT(spec, IsOk());
  EXPECT_THAT(spec->retry().exit_codes(), ElementsAre(75));
}

INSTANTIATE_TEST_SUITE_P(
    BadRetriesAndLimits, BadSpecTest,
    ::testing::Values(
        BadSpec{"run: x\nretry: {exit_codes: [3]}\n", "retry.max_restarts: required"},
        BadSpec{"run: x\nretry: {max_restarts: 1, exit_codes: [0]}\n",
                "retry.exit_codes[0]: must be in 1..255, got 0"},
        BadSpec{"run: x\nretry: {max_restarts: 1, exit_codes: [3, fail]}\n",
                "retry.exit_codes[1]: expected an exit code 1..255, got \"fail\""},
        BadSpec{"run: x\nretry: 500\n", "retry: must be in 0..100, got 500"},
        BadSpec{"run: x\nretry: {max_restarts: 1, backof: 10s}\n",
                "retry.backof: unknown key (expected one of: max_restarts, exit_codes, backoff, "
                "max_backoff)"},
        BadSpec{"run: x\nretry: {max_restarts: 1, backoff: soon}\n",
                "retry.backoff: expected a positive duration such as 90m or 2h30m, got \"soon\""},
        BadSpec{"run: x\nmax_duration: forever\n",
                "max_duration: expected a positive duration such as 90m or 2h30m, got "
                "\"forever\""},
        BadSpec{"run: x\nnot_before: later\n",
                "not_before: expected a time such as 2026-11-27T08:00:00Z or a duration from now "
                "such as 12h, got \"later\""}));

INSTANTIATE_TEST_SUITE_P(
    BadValues, BadSpecTest,
    ::testing::Values(
        BadSpec{"run: x\nresources: {gpus: two}\n",
                "resources.gpus: expected a non-negative integer, got \"two\""},
        BadSpec{"run: x\nresources: {gpus: -1}\n",
                "resources.gpus: expected a non-negative integer, got \"-1\""},
        BadSpec{"run: x\nresources: {gpus: 1.5}\n",
                "resources.gpus: expected a non-negative integer, got \"1.5\""},
        BadSpec{"run: x\nresources: {cpus: lots}\n",
                "resources.cpus: expected a non-negative number, got \"lots\""},
        BadSpec{"run: x\nresources: {cpus: -2}\n",
                "resources.cpus: expected a non-negative number, got \"-2\""},
        BadSpec{"run: x\nresources: {memory: 8 gigs}\n",
                "resources.memory: expected a size such as 8GB, 512MiB or a number of bytes, "
                "got \"8 gigs\""},
        BadSpec{"run: x\nresources: {gpu_memory: [24GB]}\n",
                "resources.gpu_memory: expected a size such as 8GB, got a list"},
        BadSpec{"run: x\nresources: {gpu_model: [H100, {a: b}]}\n",
                "resources.gpu_model[1]: expected a string, got a mapping"},
        BadSpec{"run: x\nresources: 4\n", "resources: expected a mapping, got \"4\""},
        BadSpec{"run: x\npriority: high\n", "priority: expected an integer, got \"high\""},
        BadSpec{"run: x\npriority: 5000\n", "priority: must be in -1000..1000, got 5000"},
        BadSpec{"run: x\nenv: [A, B]\n", "env: expected a mapping, got a list"},
        BadSpec{"run: x\nenv: {A: [1, 2]}\n",
                "env.A: expected a string, number or boolean, got a list"},
        BadSpec{"run: x\nlabels: {team: {a: b}}\n",
                "labels.team: expected a string, number or boolean, got a mapping"},
        BadSpec{"run: x\nname: {first: a}\n", "name: expected a string, got a mapping"},
        BadSpec{"run: x\nrun: y\n", "run: duplicate key"},
        BadSpec{"- run: x\n", "job spec: expected a mapping, got a list"}));

INSTANTIATE_TEST_SUITE_P(MissingRun, BadSpecTest,
                         ::testing::Values(BadSpec{"name: a\n", "run: required"},
                                           BadSpec{"", "run: required"},
                                           BadSpec{"run: \"  \"\n", "run: required"},
                                           BadSpec{"run:\n", "run: required"}));

TEST(ParseJobSpecYaml, SyntaxErrorGivesLineAndColumn) {
  EXPECT_THAT(
      ParseJobSpecYaml("name: a\nrun: x\nresources: {gpus: 1\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid YAML at line 4, column 1:")));
  EXPECT_THAT(
      ParseJobSpecYaml("run: x\n  bad: indent\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid YAML at line 2, column 6:")));
}

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

TEST(ParseJobSpecYaml, SecretsAreNamesWhoseValuesComeLater) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(R"(
run: python train.py
env:
  MODE: fast
secrets: [HF_TOKEN, WANDB_API_KEY]
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->env_size(), 3);
  EXPECT_EQ(spec->env(0).name(), "MODE");
  EXPECT_FALSE(spec->env(0).secret());
  EXPECT_EQ(spec->env(1).name(), "HF_TOKEN");
  EXPECT_TRUE(spec->env(1).secret());
  EXPECT_EQ(spec->env(1).value(), "");
  EXPECT_EQ(spec->env(2).name(), "WANDB_API_KEY");
  EXPECT_THAT(ParseJobSpecYaml("run: x\nsecrets: {HF_TOKEN: abc}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a list of variable names")));
}

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

// Found by fuzzing: bytes that are not UTF-8 made a spec schedctl could not send.
TEST(ParseJobSpecYaml, TextThatIsNotUtf8IsRefused) {
  EXPECT_THAT(ParseJobSpecYaml("run: |\n  e\xff\xff"
                               "cho a\n")
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8 text (byte 10")));
  EXPECT_THAT(ParseJobSpecYaml("run: echo \xc3\x28\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")));
  EXPECT_THAT(ParseJobSpecYaml("run: echo \xed\xa0\x80\n").status(),  // a surrogate
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")));
  EXPECT_THAT(ParseJobSpecYaml("run: echo \xe2\x82").status(),  // cut short
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")));
  // A NUL is UTF-8, but the YAML reader would turn it and the byte after it into a byte that is
  // not (found by fuzzing): control characters other than tab and line breaks are refused.
  EXPECT_THAT(ParseJobSpecYaml(std::string("run: a\0Nb\n", 10)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control character (byte 6 is 0x00)")));
  EXPECT_THAT(ParseJobSpecYaml("run: a\x1b[31m\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 6 is 0x1b")));
  EXPECT_TRUE(ParseJobSpecYaml("run:\r\n\techo a\r\n").ok());
  absl::StatusOr<sched::v1::JobSpec> ok = ParseJobSpecYaml("run: echo héllo ✓ 🚀\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->run(), "echo héllo ✓ 🚀");
}

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

TEST(ParseJobSpecYaml, ReadsASweepWithListsRangesAndEarlyStopping) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(R"(
run: python train.py --lr $LR --bs $BS
sweep:
  parameters:
    LR: {from: 0.0001, to: 0.1, count: 4, scale: log}
    BS: {from: 16, to: 64, step: 16}
    OPT: [adam, sgd]
    DROP: {from: 0, to: 0.5, count: 3}
  max_parallel: 4
  metric: val_loss
  goal: minimize
  early_stopping: {rule: asha, min_step: 1, reduction_factor: 3, max_step: 27}
)");
  ASSERT_THAT(spec, IsOk());
  const sched::v1::Sweep& sw = spec->sweep();
  ASSERT_EQ(sw.parameters_size(), 4);
  EXPECT_EQ(sw.parameters(0).name(), "LR");
  EXPECT_THAT(sw.parameters(0).values(), ElementsAre("0.0001", "0.001", "0.01", "0.1"));
  EXPECT_THAT(sw.parameters(1).values(), ElementsAre("16", "32", "48", "64"));
  EXPECT_THAT(sw.parameters(2).values(), ElementsAre("adam", "sgd"));
  EXPECT_THAT(sw.parameters(3).values(), ElementsAre("0", "0.25", "0.5"));
  EXPECT_EQ(sw.max_parallel(), 4u);
  EXPECT_EQ(sw.metric(), "val_loss");
  EXPECT_FALSE(sw.maximize());
  EXPECT_EQ(sw.early_stopping().rule(), "asha");
  EXPECT_EQ(sw.early_stopping().reduction_factor(), 3u);
  EXPECT_EQ(sw.early_stopping().max_step(), 27);

  spec = ParseJobSpecYaml(R"(
run: x
sweep:
  runs:
    - {MODEL: small, STEPS: 100}
    - {MODEL: large, STEPS: 50}
  metric: acc
  goal: maximize
  early_stopping: median
)");
  ASSERT_THAT(spec, IsOk());
  ASSERT_EQ(spec->sweep().runs_size(), 2);
  EXPECT_EQ(spec->sweep().runs(1).values().at("MODEL"), "large");
  EXPECT_EQ(spec->sweep().runs(1).values().at("STEPS"), "50");
  EXPECT_TRUE(spec->sweep().maximize());
  EXPECT_EQ(spec->sweep().early_stopping().rule(), "median");
}

INSTANTIATE_TEST_SUITE_P(
    BadSweeps, BadSpecTest,
    ::testing::Values(
        BadSpec{"run: x\nsweep: {max_parallel: 2}\n",
                "sweep: needs parameters (a grid) or runs (a list)"},
        BadSpec{"run: x\nsweep: {parameters: {LR: []}}\n", "sweep.parameters.LR: an empty list"},
        BadSpec{"run: x\nsweep: {parameters: {LR: {from: 1}}}\n",
                "sweep.parameters.LR: a range needs from and to"},
        BadSpec{"run: x\nsweep: {parameters: {LR: {from: 1, to: 2}}}\n",
                "sweep.parameters.LR: a range needs step or count (one of them)"},
        BadSpec{"run: x\nsweep: {parameters: {LR: {from: 0, to: 1, count: 3, scale: log}}}\n",
                "sweep.parameters.LR.scale: log needs from and to above 0"},
        BadSpec{"run: x\nsweep: {parameters: {LR: {from: 1, to: 2, step: -1}}}\n",
                "sweep.parameters.LR: needs from <= to and step > 0"},
        BadSpec{"run: x\nsweep: {parameters: {A: [1]}, goal: lowest}\n",
                "sweep.goal: expected minimize or maximize, got \"lowest\""},
        BadSpec{"run: x\nsweep: {parameters: {A: [1]}, early_stopping: {min_step: 2}}\n",
                "sweep.early_stopping.rule: required (median or asha)"},
        BadSpec{"run: x\nsweep: {runs: [A]}\n", "sweep.runs[0]: expected a mapping, got \"A\""},
        BadSpec{"run: x\nsweep: {parameters: {A: [1]}, seeds: 3}\n",
                "sweep.seeds: unknown key (expected one of: parameters, runs, max_parallel, "
                "metric, goal, early_stopping)"}));

}  // namespace
}  // namespace sched::client

namespace sched::client {
namespace {

TEST(ParseJobSpecYaml, ReadsDependencies) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(
      "run: x\nafter:\n  - 1a2b3c\n  - {job: 4d5e6f, when: failure}\n  - {job: 778899, when: always}\n");
  ASSERT_THAT(spec, IsOk());
  ASSERT_EQ(spec->after_size(), 3);
  EXPECT_EQ(spec->after(0).job_id(), "1a2b3c");
  EXPECT_EQ(spec->after(0).when(), "success");
  EXPECT_EQ(spec->after(1).when(), "failure");
  EXPECT_EQ(spec->after(2).when(), "always");
  spec = ParseJobSpecYaml("run: x\nafter: 1a2b3c\n");
  ASSERT_THAT(spec, IsOk());
  ASSERT_EQ(spec->after_size(), 1);
  EXPECT_THAT(ParseJobSpecYaml("run: x\nafter: [{job: a, when: maybe}]\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "after[0].when: expected success, failure or always, got \"maybe\""));
  EXPECT_THAT(ParseJobSpecYaml("run: x\nafter: [{when: always}]\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "after[0].job: required"));
  EXPECT_THAT(ParseJobSpecYaml("run: x\nafter: {job: a}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "after: expected a job ID or a list of them, got a mapping"));
}

TEST(ParseJobSpecYaml, ReadsOutputsAndInputs) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(
      "run: x\noutputs: [model/, metrics.json]\ninputs: {data: 1a2b3c, base: 4d5e6f}\n"
      "after: [1a2b3c, 4d5e6f]\n");
  ASSERT_THAT(spec, IsOk());
  ASSERT_EQ(spec->outputs_size(), 2);
  EXPECT_EQ(spec->outputs(0), "model/");
  EXPECT_EQ(spec->outputs(1), "metrics.json");
  ASSERT_EQ(spec->inputs_size(), 2);
  EXPECT_EQ(spec->inputs(0).name(), "data");
  EXPECT_EQ(spec->inputs(0).job_id(), "1a2b3c");
  EXPECT_EQ(spec->inputs(1).name(), "base");
  spec = ParseJobSpecYaml("run: x\noutputs: out.bin\ninputs: 1a2b3c\n");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->outputs(0), "out.bin");
  EXPECT_EQ(spec->inputs(0).name(), "1a2b3c");
  EXPECT_THAT(ParseJobSpecYaml("run: x\noutputs: {a: b}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "outputs: expected a path or a list of paths, got a mapping"));
  EXPECT_THAT(ParseJobSpecYaml("run: x\ninputs: {data: [a]}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inputs.data: expected a string")));
  EXPECT_THAT(ParseJobSpecYaml("stages: []\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("this is a pipeline")));
}

TEST(ParsePipelineYaml, ChainsStagesAndTurnsInputsIntoDependencies) {
  const char* yaml = R"(pipeline: finetune
project: ml
stages:
  - name: prepare
    run: python prep.py
    placement: local-only
    outputs: [data/]
  - name: train
    run: python train.py
    inputs: [prepare]
    resources: {gpus: 1, gpu_memory: 24GB}
    outputs: [model/]
  - name: evaluate
    project: eval
    run: python eval.py
    after: [{job: train, when: always}]
    inputs: [prepare]
)";
  ASSERT_TRUE(IsPipelineYaml(yaml));
  EXPECT_FALSE(IsPipelineYaml("run: x\n"));
  absl::StatusOr<Pipeline> p = ParsePipelineYaml(yaml);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->name, "finetune");
  ASSERT_EQ(p->stages.size(), 3u);
  const sched::v1::JobSpec& prepare = p->stages[0].spec;
  EXPECT_EQ(prepare.after_size(), 0);
  EXPECT_EQ(prepare.project(), "ml");
  EXPECT_EQ(prepare.labels().at("pipeline"), "finetune");
  EXPECT_EQ(prepare.labels().at("stage"), "prepare");
  // No after: the stage before (its input is already there).
  const sched::v1::JobSpec& train = p->stages[1].spec;
  ASSERT_EQ(train.after_size(), 1);
  EXPECT_EQ(train.after(0).job_id(), "prepare");
  EXPECT_EQ(train.after(0).when(), "success");
  // Its own after kept; its input added as a dependency on success.
  sched::v1::JobSpec evaluate = p->stages[2].spec;
  EXPECT_EQ(evaluate.project(), "eval");
  ASSERT_EQ(evaluate.after_size(), 2);
  EXPECT_EQ(evaluate.after(0).job_id(), "train");
  EXPECT_EQ(evaluate.after(0).when(), "always");
  EXPECT_EQ(evaluate.after(1).job_id(), "prepare");
  EXPECT_EQ(evaluate.after(1).when(), "success");
  ASSERT_THAT(ResolveStages(evaluate, {{"prepare", "aaaa"}, {"train", "bbbb"}}), IsOk());
  EXPECT_EQ(evaluate.after(0).job_id(), "bbbb");
  EXPECT_EQ(evaluate.after(1).job_id(), "aaaa");
  EXPECT_EQ(evaluate.inputs(0).job_id(), "aaaa");
  EXPECT_EQ(evaluate.inputs(0).name(), "prepare");
  EXPECT_THAT(ResolveStages(evaluate, {}), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ParsePipelineYaml, BadPipelinesNameTheStageAndTheKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"stages: []\n", "stages: expected a list of job specs, each with a name"},
      {"stages: {a: 1}\n", "stages: expected a list of job specs, each with a name"},
      {"stages:\n  - run: x\n", "stages[0].name: required: it names the stage"},
      {"stages:\n  - {name: a, run: x}\n  - {name: a, run: y}\n",
       "stages[1].name: \"a\" is taken"},
      {"stages:\n  - {name: a, run: x, after: [b]}\n  - {name: b, run: y}\n",
       "stages[0].after[0]: no earlier stage is named \"b\""},
      {"stages:\n  - {name: a, run: x}\n  - {name: b, run: y, inputs: [c]}\n",
       "stages[1].inputs[0]: no earlier stage is named \"c\""},
      {"stages:\n  - {name: a, run: x, resources: {gpus: two}}\n",
       "stages[0].resources.gpus: expected"},
      {"pipeline: p\nowner: me\nstages:\n  - {name: a, run: x}\n", "owner: unknown key"},
  };
  for (const auto& [yaml, want] : cases) {
    EXPECT_THAT(ParsePipelineYaml(yaml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(want)))
        << yaml;
  }
}

}  // namespace
}  // namespace sched::client
