#include "tests/e2e/crash_loop_history.h"

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace sched::crash_loop {
namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

const char* KindName(OpKind k) { return k == OpKind::kSubmit ? "submit" : "cancel"; }

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kInvoked:
      return "invoked";
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "?";
}

const char* ResolutionName(Resolution r) {
  switch (r) {
    case Resolution::kNone:
      return "none";
    case Resolution::kApplied:
      return "applied";
    case Resolution::kNotApplied:
      return "not_applied";
  }
  return "?";
}

}  // namespace

bool IsTerminal(State s) {
  return s == State::kSucceeded || s == State::kFailed || s == State::kCancelled;
}

const char* StateName(State s) {
  static constexpr const char* kNames[] = {"UNSPECIFIED", "PENDING", "ASSIGNED", "RUNNING",
                                           "SUCCEEDED",   "FAILED",  "CANCELLED"};
  const int i = static_cast<int>(s);
  return i >= 0 && i < 7 ? kNames[i] : "?";
}

History::History(const std::string& jsonl_path) {
  if (!jsonl_path.empty()) out_.open(jsonl_path, std::ios::app);
}

Op& History::At(uint64_t op) { return ops_.at(op - 1); }

uint64_t History::Invoke(int worker, OpKind kind, std::string key) {
  absl::MutexLock lock(&mu_);
  Op& op = ops_.emplace_back();
  op.id = ops_.size();
  op.worker = worker;
  op.kind = kind;
  op.key = std::move(key);
  op.invoke_us = NowMicros();
  WriteLocked(op, "invoke");
  return op.id;
}

void History::Ok(uint64_t id, JobView job, bool existing) {
  absl::MutexLock lock(&mu_);
  Op& op = At(id);
  op.complete_us = NowMicros();
  op.outcome = Outcome::kOk;
  op.job = std::move(job);
  op.existing = existing;
  WriteLocked(op, "complete");
}

void History::Fail(uint64_t id, int code, std::string message) {
  Complete(id, Outcome::kFailed, code, std::move(message));
}

void History::Unknown(uint64_t id, int code, std::string message) {
  Complete(id, Outcome::kUnknown, code, std::move(message));
}

void History::Complete(uint64_t id, Outcome outcome, int code, std::string message) {
  absl::MutexLock lock(&mu_);
  Op& op = At(id);
  op.complete_us = NowMicros();
  op.outcome = outcome;
  op.code = code;
  op.message = std::move(message);
  WriteLocked(op, "complete");
}

void History::Resolve(uint64_t id, Resolution resolution) {
  absl::MutexLock lock(&mu_);
  Op& op = At(id);
  op.resolution = resolution;
  WriteLocked(op, "resolve");
}

std::vector<Op> History::ops() const {
  absl::MutexLock lock(&mu_);
  return ops_;
}

void History::WriteLocked(const Op& op, const char* event) {
  if (!out_.is_open()) return;
  std::string line = absl::StrCat("{\"event\":\"", event, "\",\"op\":", op.id,
                                  ",\"worker\":", op.worker, ",\"kind\":\"", KindName(op.kind),
                                  "\",\"key\":", JsonString(op.key), ",\"invoke_us\":", op.invoke_us,
                                  ",\"outcome\":\"", OutcomeName(op.outcome), "\"");
  if (op.outcome != Outcome::kInvoked) absl::StrAppend(&line, ",\"complete_us\":", op.complete_us);
  if (op.outcome == Outcome::kOk) {
    absl::StrAppend(&line, ",\"job\":", JsonString(op.job.id), ",\"state\":\"",
                    StateName(op.job.state), "\",\"existing\":", op.existing ? "true" : "false");
  } else if (op.outcome != Outcome::kInvoked) {
    absl::StrAppend(&line, ",\"code\":", op.code, ",\"message\":", JsonString(op.message));
  }
  if (op.resolution != Resolution::kNone) {
    absl::StrAppend(&line, ",\"resolution\":\"", ResolutionName(op.resolution), "\"");
  }
  line += "}\n";
  out_ << line;
  out_.flush();
}

}  // namespace sched::crash_loop
