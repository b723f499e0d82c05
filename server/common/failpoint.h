#pragma once

// Failpoints: named places in the code where a test harness can make the process fail on
// purpose, to prove that recovery works from exactly there. Off unless configured; an unarmed
// point costs one relaxed atomic load.
//
// Configuration is a comma-separated list of `name=action`:
//   crash        SIGKILL this process at the point, every time it is reached
//   crash@P      ... with probability P in (0, 1], from a generator seeded by `seed`
//   crash#N      ... the N-th time the point is reached (N >= 1)
//   off          disarm
// schedd reads it from --failpoints, or from SCHED_FAILPOINTS when the flag is empty.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sched {

// The points compiled into the product. Arming a name not listed here is an error, so a typo in a
// harness cannot silently test nothing.
inline constexpr absl::string_view kFailpointAfterSyncBeforeReply = "store.after_sync_before_reply";
inline constexpr absl::string_view kFailpointBeforeSync = "store.before_sync";
inline constexpr absl::string_view kFailpointBeforeSendAssignment =
    "scheduler.before_send_assignment";
std::vector<absl::string_view> KnownFailpoints();

// Replaces the whole configuration. INVALID_ARGUMENT names the bad entry; the previous
// configuration stays when the spec is refused.
absl::Status ConfigureFailpoints(absl::string_view spec, uint64_t seed);

namespace failpoint_internal {
extern std::atomic<bool> any_armed;
// True when the armed action of `name` fires at this hit.
bool Evaluate(absl::string_view name);
[[noreturn]] void Crash(absl::string_view name);
}  // namespace failpoint_internal

// True when `name` is armed and fires now; for actions other than crash (none yet) the caller
// decides what failing means.
inline bool FailpointFires(absl::string_view name) {
  return failpoint_internal::any_armed.load(std::memory_order_relaxed) &&
         failpoint_internal::Evaluate(name);
}

// Kills the process at this point when `name` fires.
inline void MaybeCrashAt(absl::string_view name) {
  if (FailpointFires(name)) failpoint_internal::Crash(name);
}

}  // namespace sched
