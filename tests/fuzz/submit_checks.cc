#include "tests/fuzz/submit_checks.h"

#include <cmath>
#include <initializer_list>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/convert/convert.h"
#include "server/core/gpu_memory.h"
#include "server/core/job_spec_validation.h"
#include "tests/fuzz/fuzz_support.h"

namespace sched::fuzz {
namespace {

// The rules of job_spec_validation.h, written again from its comments (not its code).

bool NameRule(absl::string_view s) {
  if (s.empty() || s.size() > 63 || !absl::ascii_isalnum(static_cast<unsigned char>(s[0]))) {
    return false;
  }
  for (char c : s) {
    const bool ok =
        absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool EnvNameRule(absl::string_view s) {
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return !absl::StartsWith(s, "SCHED_");
}

bool In(absl::string_view value, std::initializer_list<absl::string_view> allowed) {
  if (value.empty()) return true;
  for (absl::string_view a : allowed) {
    if (value == a) return true;
  }
  return false;
}

// What a spec ValidateAndDefaultJobSpec let through must look like.
void CheckValidated(const JobSpec& s, absl::Time now, absl::string_view where) {
  const auto fail = [&](absl::string_view rule) { return absl::StrCat(where, ": ", rule); };
  SCHED_FUZZ_CHECK(s.name.empty() || NameRule(s.name), fail(absl::StrCat("name ", s.name)));
  SCHED_FUZZ_CHECK(NameRule(s.project), fail(absl::StrCat("project ", s.project)));
  SCHED_FUZZ_CHECK(s.run.find_first_not_of(" \t\r\n") != std::string::npos, fail("blank run"));
  SCHED_FUZZ_CHECK(s.run.size() <= kMaxScriptBytes && s.setup.size() <= kMaxScriptBytes,
                   fail("script over kMaxScriptBytes"));
  for (const auto& [name, value] : s.env) {
    SCHED_FUZZ_CHECK(EnvNameRule(name), fail(absl::StrCat("env name ", name)));
  }
  const Resources& r = s.resources;
  SCHED_FUZZ_CHECK(r.gpus <= 64, fail(absl::StrCat("gpus ", r.gpus)));
  SCHED_FUZZ_CHECK(r.gpu_memory_bytes >= 0, fail(absl::StrCat("gpu_memory ", r.gpu_memory_bytes)));
  SCHED_FUZZ_CHECK(r.gpu_memory_bytes == 0 || r.gpus > 0, fail("gpu_memory without gpus"));
  SCHED_FUZZ_CHECK(r.gpu_models.empty() || r.gpus > 0, fail("gpu_model without gpus"));
  for (const std::string& m : r.gpu_models) SCHED_FUZZ_CHECK(!m.empty(), fail("empty gpu_model"));
  SCHED_FUZZ_CHECK(r.cpu_millis > 0, fail(absl::StrCat("cpu_millis ", r.cpu_millis)));
  SCHED_FUZZ_CHECK(r.memory_bytes >= 0, fail(absl::StrCat("memory ", r.memory_bytes)));
  SCHED_FUZZ_CHECK(s.priority >= kMinPriority && s.priority <= kMaxPriority,
                   fail(absl::StrCat("priority ", s.priority)));
  for (const auto& [key, value] : s.labels) {
    SCHED_FUZZ_CHECK(NameRule(key) && value.size() <= 256, fail(absl::StrCat("label ", key)));
  }
  const ModelDescription& m = s.model;
  SCHED_FUZZ_CHECK(m.parameters >= 0 && m.parameters <= kMaxModelParameters,
                   fail(absl::StrCat("parameters ", m.parameters)));
  if (m.parameters == 0) {
    SCHED_FUZZ_CHECK(m.precision.empty() && m.method.empty() && m.optimizer.empty() &&
                         m.batch_size == 0 && m.sequence_length == 0 && m.lora_rank == 0 &&
                         !m.gradient_checkpointing,
                     fail("model fields without parameters"));
  }
  SCHED_FUZZ_CHECK(In(m.precision, {"fp32", "bf16", "fp16", "int8", "int4"}), fail(m.precision));
  SCHED_FUZZ_CHECK(In(m.method, {"inference", "full", "lora", "qlora"}), fail(m.method));
  SCHED_FUZZ_CHECK(In(m.optimizer, {"adamw", "adamw-8bit", "sgd"}), fail(m.optimizer));
  SCHED_FUZZ_CHECK(m.batch_size <= kMaxBatchSize && m.sequence_length <= kMaxSequenceLength,
                   fail("batch or sequence too large"));
  SCHED_FUZZ_CHECK(s.runtime >= absl::ZeroDuration() && s.runtime <= absl::Hours(24 * 366),
                   fail(absl::StrCat("runtime ", absl::FormatDuration(s.runtime))));
  SCHED_FUZZ_CHECK(s.runtime_gpu_model.empty() || s.runtime > absl::ZeroDuration(),
                   fail("runtime gpu_model without a runtime"));
  SCHED_FUZZ_CHECK(s.deadline == absl::InfiniteFuture() || s.deadline > now,
                   fail("deadline passed"));
  SCHED_FUZZ_CHECK(s.max_cost >= 0 && s.max_cost <= kMaxCostDollars,
                   fail(absl::StrCat("max_cost ", s.max_cost)));
}

void CheckInvalidArgument(const absl::Status& status, absl::string_view step) {
  SCHED_FUZZ_CHECK(status.ok() || absl::IsInvalidArgument(status),
                   absl::StrCat(step, " refused a spec with ", Describe(status),
                                ": a malformed spec is INVALID_ARGUMENT"));
}

}  // namespace

absl::Status CheckSubmit(const v1::JobSpec& proto, absl::Time now) {
  absl::StatusOr<JobSpec> converted = JobSpecFromProto(proto);
  CheckInvalidArgument(converted.status(), "JobSpecFromProto");
  if (!converted.ok()) return converted.status();
  JobSpec spec = *std::move(converted);

  absl::Status status = ValidateAndDefaultJobSpec(spec, now);
  CheckInvalidArgument(status, "ValidateAndDefaultJobSpec");
  if (!status.ok()) return status;
  CheckValidated(spec, now, "ValidateAndDefaultJobSpec let through");

  status = EstimateGpuMemory(spec);
  CheckInvalidArgument(status, "EstimateGpuMemory");
  if (!status.ok()) return status;
  CheckValidated(spec, now, "EstimateGpuMemory left");
  SCHED_FUZZ_CHECK(!spec.resources.gpu_memory_estimated || spec.resources.gpu_memory_bytes > 0,
                   absl::StrCat("estimated gpu_memory of ", spec.resources.gpu_memory_bytes));

  // The store keeps the job as JobSpecToProto wrote it and reads it back at start.
  v1::JobSpec written;
  JobSpecToProto(spec, &written);
  const std::string bytes = DeterministicBytes(written);
  v1::JobSpec read;
  SCHED_FUZZ_CHECK(read.ParseFromString(bytes), "JobSpecToProto wrote bytes that do not parse");
  absl::StatusOr<JobSpec> reloaded = JobSpecFromProto(read);
  SCHED_FUZZ_CHECK(reloaded.ok(), absl::StrCat("an accepted spec does not load back: ",
                                               Describe(reloaded.status())));
  v1::JobSpec rewritten;
  JobSpecToProto(*reloaded, &rewritten);
  SCHED_FUZZ_CHECK(DeterministicBytes(rewritten) == bytes,
                   absl::StrCat("an accepted spec changes across the store:\n",
                                written.DebugString(), "became\n", rewritten.DebugString()));
  JobSpec again = *std::move(reloaded);
  const absl::Status second = ValidateAndDefaultJobSpec(again, now);
  SCHED_FUZZ_CHECK(second.ok(), absl::StrCat("an accepted spec is refused when checked again: ",
                                             Describe(second)));
  return absl::OkStatus();
}

}  // namespace sched::fuzz
