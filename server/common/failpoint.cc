#include "server/common/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace sched {
namespace failpoint_internal {

std::atomic<bool> any_armed{false};

namespace {

struct Armed {
  double probability = 1.0;  // crash@P
  uint64_t nth = 0;          // crash#N; 0: not counted
  uint64_t hits = 0;
};

struct Registry {
  absl::Mutex mu;
  std::map<std::string, Armed, std::less<>> armed ABSL_GUARDED_BY(mu);
  std::mt19937_64 rng ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

absl::Status ParseAction(absl::string_view name, absl::string_view action, Armed& armed,
                         bool& off) {
  off = action == "off";
  if (off) return absl::OkStatus();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("failpoint ", name, "=", action, ": ", why,
                     " (want crash, crash@PROBABILITY, crash#N or off)"));
  };
  if (!absl::ConsumePrefix(&action, "crash")) return bad("unknown action");
  if (action.empty()) return absl::OkStatus();
  if (absl::ConsumePrefix(&action, "@")) {
    if (!absl::SimpleAtod(action, &armed.probability) || !(armed.probability > 0) ||
        armed.probability > 1) {
      return bad("probability must be in (0, 1]");
    }
    return absl::OkStatus();
  }
  if (absl::ConsumePrefix(&action, "#")) {
    if (!absl::SimpleAtoi(action, &armed.nth) || armed.nth == 0) return bad("N must be >= 1");
    return absl::OkStatus();
  }
  return bad("unknown suffix");
}

}  // namespace

bool Evaluate(absl::string_view name) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto it = r.armed.find(name);
  if (it == r.armed.end()) return false;
  Armed& armed = it->second;
  ++armed.hits;
  if (armed.nth != 0) return armed.hits == armed.nth;
  if (armed.probability >= 1.0) return true;
  return std::uniform_real_distribution<double>(0, 1)(r.rng) < armed.probability;
}

void Crash(absl::string_view name) {
  // Straight to the kernel: no buffered I/O, no destructors, exactly like kill -9 here.
  std::string line = absl::StrCat("failpoint ", name, ": crash\n");
  (void)!write(STDERR_FILENO, line.data(), line.size());
  kill(getpid(), SIGKILL);
  _exit(137);
}

}  // namespace failpoint_internal

std::vector<absl::string_view> KnownFailpoints() {
  return {kFailpointAfterSyncBeforeReply, kFailpointBeforeSync, kFailpointBeforeSendAssignment};
}

absl::Status ConfigureFailpoints(absl::string_view spec, uint64_t seed) {
  using failpoint_internal::Armed;
  std::map<std::string, Armed, std::less<>> armed;
  const std::vector<absl::string_view> known = KnownFailpoints();
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(entry, '=');
    if (std::find(known.begin(), known.end(), kv.first) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "failpoint ", kv.first, ": unknown; known: ", absl::StrJoin(known, ", ")));
    }
    Armed a;
    bool off = false;
    if (absl::Status s = failpoint_internal::ParseAction(kv.first, kv.second, a, off); !s.ok()) {
      return s;
    }
    if (off) {
      armed.erase(std::string(kv.first));
    } else {
      armed[std::string(kv.first)] = a;
    }
  }
  failpoint_internal::Registry& r = failpoint_internal::GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.armed = std::move(armed);
  r.rng.seed(seed);
  failpoint_internal::any_armed.store(!r.armed.empty(), std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace sched
