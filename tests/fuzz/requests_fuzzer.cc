// Requests as schedd's handlers receive them, through the conversions and checks the handlers
// and the scheduler run on them before anything is kept. The first byte picks the request; the
// rest is its protobuf bytes (ParseFromArray, as gRPC hands them over):
//
//   0 SubmitJobRequest      JobSpecFromProto, ValidateAndDefaultJobSpec, EstimateGpuMemory
//   1 EstimateJobRequest    the same
//   2 ListJobsRequest       JobStateFromProto on each state filter
//   3 AgentMessage          Register: CapabilitiesFromProto; update: JobStateFromProto;
//                           log: LogStreamFromProto
//   4 CreateTokenRequest    TokenStore::Create on a MemoryStore
//   5 SetBudgetRequest      ValidateBudget on the budget the handler builds
//   6 CommitCheckpointRequest  CheckManifest on the manifest the handler builds
//
// Checked: errors are INVALID_ARGUMENT; what is accepted keeps the rules the checks promise
// (submit_checks.h, node_checks.h, and below).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "sched/v1/agent_service.pb.h"
#include "sched/v1/checkpoint_service.pb.h"
#include "sched/v1/cost_service.pb.h"
#include "sched/v1/job_service.pb.h"
#include "sched/v1/token_service.pb.h"
#include "server/auth/auth.h"
#include "server/checkpoint/checkpoint_files.h"
#include "server/common/clock.h"
#include "server/convert/convert.h"
#include "server/core/ledger.h"
#include "server/store/memory_store.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/node_checks.h"
#include "tests/fuzz/submit_checks.h"

namespace sched::fuzz {
namespace {

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message& out) {
  return out.ParseFromArray(data, static_cast<int>(size));
}

void CheckJobState(int value) {
  const auto state = static_cast<v1::JobState>(value);
  absl::StatusOr<JobState> s = JobStateFromProto(state);
  const bool named = value >= v1::JOB_STATE_PENDING && value <= v1::JOB_STATE_STOPPED_EARLY;
  SCHED_FUZZ_CHECK(s.ok() == named,
                   absl::StrCat("JobStateFromProto(", value, ") answered ", Describe(s.status())));
  if (s.ok()) {
    SCHED_FUZZ_CHECK(JobStateToProto(*s) == state, absl::StrCat("state ", value, " round trip"));
  } else {
    SCHED_FUZZ_CHECK(absl::IsInvalidArgument(s.status()), Describe(s.status()));
  }
}

void CheckAgentMessage(const v1::AgentMessage& message) {
  switch (message.msg_case()) {
    case v1::AgentMessage::kRegister:
      CheckCapabilities(message.register_().capabilities()).IgnoreError();
      break;
    case v1::AgentMessage::kUpdate:
      CheckJobState(message.update().state());
      break;
    case v1::AgentMessage::kLog: {
      const LogStreamKind kind = LogStreamFromProto(message.log().stream());
      SCHED_FUZZ_CHECK(kind == LogStreamKind::kStdout || kind == LogStreamKind::kStderr,
                       "LogStreamFromProto gave neither stream");
      break;
    }
    default:
      break;
  }
}

bool IsLowerHex(absl::string_view s, size_t size) {
  if (s.size() != size) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void CheckCreateToken(const v1::CreateTokenRequest& req) {
  MemoryStore store;
  FakeClock clock(kFuzzNow);
  absl::StatusOr<std::unique_ptr<auth::TokenStore>> tokens = auth::TokenStore::Open(&store, &clock);
  SCHED_FUZZ_CHECK(tokens.ok(), Describe(tokens.status()));
  absl::StatusOr<v1::CreateTokenResponse> made = (*tokens)->Create(req, "fuzz");
  if (!made.ok()) {
    SCHED_FUZZ_CHECK(absl::IsInvalidArgument(made.status()),
                     absl::StrCat("TokenStore::Create answered ", Describe(made.status())));
    return;
  }
  const v1::Token& token = made->token();
  SCHED_FUZZ_CHECK(token.role() == req.role() && req.role() != v1::ROLE_UNSPECIFIED,
                   absl::StrCat("made a token of role ", token.role(), " for ", req.role()));
  SCHED_FUZZ_CHECK(IsLowerHex(token.id(), 16), absl::StrCat("token id ", token.id()));
  SCHED_FUZZ_CHECK(made->secret().size() == 16 + 1 + 64 &&
                       made->secret().substr(0, 17) == absl::StrCat(token.id(), "."),
                   "the secret is not <id>.<64 hex>");
  SCHED_FUZZ_CHECK(req.role() != v1::ROLE_MEMBER || req.projects_size() > 0,
                   "a member token without projects");

  // A token just made works with its secret, and once for a join when it counts them.
  const bool counts_joins = token.uses_left() >= 0;
  absl::StatusOr<v1::Token> verified = (*tokens)->Verify(made->secret(), counts_joins);
  SCHED_FUZZ_CHECK(verified.ok(),
                   absl::StrCat("a token just made does not verify: ", Describe(verified.status()),
                                "\n", req.DebugString(), "made\n", token.DebugString()));
  if (counts_joins) {
    SCHED_FUZZ_CHECK(
        verified->uses_left() == token.uses_left() - 1,
        absl::StrCat("a join left ", verified->uses_left(), " of ", token.uses_left()));
  }
  SCHED_FUZZ_CHECK(
      (*tokens)->HasAdmin() == (req.role() == v1::ROLE_ADMIN && !token.has_expire_time()),
      "HasAdmin disagrees with the only token");

  // What was kept reads back as it is now.
  absl::StatusOr<std::unique_ptr<auth::TokenStore>> reopened =
      auth::TokenStore::Open(&store, &clock);
  SCHED_FUZZ_CHECK(reopened.ok(), absl::StrCat("the token store does not open again: ",
                                               Describe(reopened.status())));
  const std::vector<v1::Token> before = (*tokens)->List(), after = (*reopened)->List();
  SCHED_FUZZ_CHECK(before.size() == 1 && after.size() == 1 &&
                       DeterministicBytes(before[0]) == DeterministicBytes(after[0]),
                   "the token store reads back different tokens");
}

void CheckBudget(const v1::SetBudgetRequest& req) {
  // As CostServiceImpl::SetBudget builds it.
  Budget budget;
  budget.project = req.project();
  budget.monthly_limit = req.monthly_limit();
  if (req.alert_percents_size() > 0) {
    budget.alert_percents.assign(req.alert_percents().begin(), req.alert_percents().end());
  }
  budget.hard_cap = !req.soft();
  const absl::Status s = ValidateBudget(budget);
  if (!s.ok()) {
    SCHED_FUZZ_CHECK(absl::IsInvalidArgument(s), Describe(s));
    return;
  }
  SCHED_FUZZ_CHECK(std::isfinite(budget.monthly_limit) && budget.monthly_limit >= 0,
                   absl::StrCat("monthly_limit ", budget.monthly_limit));
  for (size_t i = 0; i < budget.alert_percents.size(); ++i) {
    const int p = budget.alert_percents[i];
    SCHED_FUZZ_CHECK(p >= 1 && p <= 1000 && (i == 0 || p > budget.alert_percents[i - 1]),
                     absl::StrCat("alert percent ", p));
  }
}

void CheckCommit(const v1::CommitCheckpointRequest& req) {
  // As CheckpointServiceImpl::CommitCheckpoint builds the manifest it commits.
  v1::Checkpoint manifest;
  manifest.set_job_id(req.uploader().job_id());
  manifest.set_name(req.name());
  manifest.set_attempt(req.attempt());
  manifest.set_epoch(req.uploader().epoch());
  manifest.set_node(req.uploader().node_name());
  manifest.set_is_dir(req.is_dir());
  *manifest.mutable_files() = req.files();
  const absl::Status s = checkpoint::CheckManifest(manifest);
  SCHED_FUZZ_CHECK(s.ok() || absl::IsInvalidArgument(s), Describe(s));
}

}  // namespace
}  // namespace sched::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sched;
  using namespace sched::fuzz;
  if (size == 0) return 0;
  const uint8_t kind = data[0];
  ++data;
  --size;
  switch (kind % 7) {
    case 0: {
      v1::SubmitJobRequest req;
      if (Parse(data, size, req)) CheckSubmit(req.spec()).IgnoreError();
      break;
    }
    case 1: {
      v1::EstimateJobRequest req;
      if (Parse(data, size, req)) CheckSubmit(req.spec()).IgnoreError();
      break;
    }
    case 2: {
      v1::ListJobsRequest req;
      if (!Parse(data, size, req)) break;
      for (int state : req.states()) CheckJobState(state);
      break;
    }
    case 3: {
      v1::AgentMessage message;
      if (Parse(data, size, message)) CheckAgentMessage(message);
      break;
    }
    case 4: {
      v1::CreateTokenRequest req;
      if (Parse(data, size, req)) CheckCreateToken(req);
      break;
    }
    case 5: {
      v1::SetBudgetRequest req;
      if (Parse(data, size, req)) CheckBudget(req);
      break;
    }
    case 6: {
      v1::CommitCheckpointRequest req;
      if (Parse(data, size, req)) CheckCommit(req);
      break;
    }
  }
  return 0;
}
