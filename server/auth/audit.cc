#include "server/auth/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sched::auth {
namespace {

// A JSON string: quotes, backslashes and control characters escaped.
std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  std::unique_ptr<AuditLog> log(new AuditLog());
  if (!path.empty()) {
    log->fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (log->fd_ < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open the audit log ", path, ": ", std::strerror(errno)));
    }
    fchmod(log->fd_, 0600);
  }
  log->writer_ = std::thread([l = log.get()] { l->WriterLoop(); });
  return log;
}

AuditLog::~AuditLog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  writer_.join();
  if (fd_ >= 0) {
    fdatasync(fd_);
    close(fd_);
  }
}

std::string AuditLog::Format(const AuditEntry& e, absl::Time when) {
  std::string line = absl::StrCat(
      "{\"time\":", Quote(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", when, absl::UTCTimeZone())),
      ",\"who\":", Quote(e.who));
  if (!e.peer.empty()) absl::StrAppend(&line, ",\"peer\":", Quote(e.peer));
  absl::StrAppend(&line, ",\"action\":", Quote(e.action));
  if (!e.target.empty()) absl::StrAppend(&line, ",\"target\":", Quote(e.target));
  if (!e.project.empty()) absl::StrAppend(&line, ",\"project\":", Quote(e.project));
  absl::StrAppend(&line, ",\"result\":", Quote(e.result), "}");
  return line;
}

void AuditLog::Record(AuditEntry entry, absl::Time when) {
  std::string line = Format(entry, when);
  line += '\n';
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(line));
  ++queued_;
}

void AuditLog::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t want = queued_;
  auto done = [this, want] { return written_ >= want; };
  mu_.Await(absl::Condition(&done));
}

void AuditLog::WriterLoop() {
  absl::Time synced = absl::Now();
  while (true) {
    std::deque<std::string> batch;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this] { return stop_ || !queue_.empty(); };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
      batch.swap(queue_);
      stopping = stop_;
    }
    std::string data;
    for (const std::string& line : batch) data += line;
    for (size_t at = 0; fd_ >= 0 && at < data.size();) {
      const ssize_t n = write(fd_, data.data() + at, data.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // a full disk: the lines are lost, schedd goes on
      at += static_cast<size_t>(n);
    }
    if (fd_ >= 0 && !data.empty() && absl::Now() - synced >= absl::Seconds(1)) {
      fdatasync(fd_);
      synced = absl::Now();
    }
    {
      absl::MutexLock lock(&mu_);
      written_ += batch.size();
    }
    if (stopping) {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
    }
  }
}

}  // namespace sched::auth
