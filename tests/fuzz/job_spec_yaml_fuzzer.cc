// job.yaml as schedctl reads it (client::ParseJobSpecYaml), then what schedd does with the spec
// it sends (CheckSubmit). The input is the YAML text.
//
// Checked: the parser answers INVALID_ARGUMENT or a spec that keeps the promises of
// job_spec_yaml.h (a run script, numbers in their ranges); nothing it lets through crashes the
// server's checks or breaks theirs (submit_checks.h).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/job_spec_yaml.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/submit_checks.h"

namespace sched::fuzz {
namespace {

void CheckParsed(const v1::JobSpec& spec) {
  SCHED_FUZZ_CHECK(!absl::StripAsciiWhitespace(spec.run()).empty(), "a spec without run");
  SCHED_FUZZ_CHECK(spec.priority() >= -1000 && spec.priority() <= 1000,
                   absl::StrCat("priority ", spec.priority()));
  const v1::Resources& r = spec.resources();
  SCHED_FUZZ_CHECK(std::isfinite(r.cpus()) && r.cpus() >= 0, absl::StrCat("cpus ", r.cpus()));
  SCHED_FUZZ_CHECK(r.memory_bytes() >= 0 && r.gpu_memory_bytes() >= 0,
                   absl::StrCat("a negative size: ", r.ShortDebugString()));
  SCHED_FUZZ_CHECK(std::isfinite(spec.max_cost()) && spec.max_cost() >= 0,
                   absl::StrCat("max_cost ", spec.max_cost()));
  if (spec.has_runtime()) {
    SCHED_FUZZ_CHECK(spec.runtime().seconds() >= 1,
                     absl::StrCat("runtime ", spec.runtime().seconds()));
  }
  if (spec.has_model()) {
    SCHED_FUZZ_CHECK(spec.model().parameters() >= 1,
                     absl::StrCat("parameters ", spec.model().parameters()));
  }
}

}  // namespace
}  // namespace sched::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sched::fuzz;
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<sched::v1::JobSpec> spec = sched::client::ParseJobSpecYaml(yaml, kFuzzNow);
  if (!spec.ok()) {
    SCHED_FUZZ_CHECK(absl::IsInvalidArgument(spec.status()),
                     absl::StrCat("the parser answered ", Describe(spec.status())));
    return 0;
  }
  CheckParsed(*spec);
  // schedctl sends the spec over gRPC: schedd sees what its bytes parse back to. (proto3 string
  // fields must be UTF-8; a spec with other bytes cannot be sent.)
  sched::v1::JobSpec sent;
  const bool sendable = sent.ParseFromString(DeterministicBytes(*spec));
  SCHED_FUZZ_CHECK(sendable, "the parser accepted a spec that cannot be sent (not UTF-8)");
  CheckSubmit(sent).IgnoreError();
  return 0;
}
