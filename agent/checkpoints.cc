#include "agent/checkpoints.h"

#include <sys/stat.h>

#include <filesystem>
#include <utility>
#include <vector>

#include "agent/log.h"
#include "server/checkpoint/checkpoint_files.h"

namespace sched::agent {
namespace {

namespace fs = std::filesystem;

struct Entry {
  std::string name;
  struct timespec mtime;
  bool operator<(const Entry& o) const {
    if (mtime.tv_sec != o.mtime.tv_sec) return mtime.tv_sec < o.mtime.tv_sec;
    if (mtime.tv_nsec != o.mtime.tv_nsec) return mtime.tv_nsec < o.mtime.tv_nsec;
    return name < o.name;
  }
};

// The published entries of `dir`, oldest first.
std::vector<Entry> Published(const std::string& dir) {
  std::vector<Entry> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (checkpoint::IsTemporaryName(name) || !checkpoint::CheckName(name).ok()) continue;
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0) continue;
    out.push_back({name, st.st_mtim});
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

CheckpointUploader::CheckpointUploader(Options options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), stub_(v1::CheckpointService::NewStub(std::move(channel))) {
  thread_ = std::thread([this] { Loop(); });
}

CheckpointUploader::~CheckpointUploader() {
  stop_.Notify();
  thread_.join();
}

void CheckpointUploader::Watch(const std::string& job_id, uint64_t epoch, uint32_t attempt,
                               const std::string& dir) {
  Watched w;
  w.epoch = epoch;
  w.attempt = attempt;
  w.dir = dir;
  for (const Entry& e : Published(dir)) w.done.insert(e.name);
  absl::MutexLock lock(&mu_);
  watched_[job_id] = std::move(w);
}

void CheckpointUploader::Unwatch(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  watched_.erase(job_id);
}

void CheckpointUploader::Flush(const std::string& job_id) {
  Watched w;
  {
    absl::MutexLock lock(&mu_);
    auto it = watched_.find(job_id);
    if (it == watched_.end()) return;
    // Wait for a look the thread has under way; then no other starts.
    struct Arg {
      CheckpointUploader* self;
      const std::string* id;
    } arg{this, &job_id};
    mu_.Await(absl::Condition(
        +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          auto found = a->self->watched_.find(*a->id);
          return found == a->self->watched_.end() || !found->second.busy;
        },
        &arg));
    it = watched_.find(job_id);
    if (it == watched_.end()) return;
    w = std::move(it->second);
    watched_.erase(it);
  }
  LookAt(job_id, w);
}

void CheckpointUploader::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll)) {
    std::vector<std::pair<std::string, Watched>> now;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, w] : watched_) {
        w.busy = true;
        now.emplace_back(id, w);
      }
    }
    for (auto& [id, w] : now) {
      const bool keep = LookAt(id, w);
      absl::MutexLock lock(&mu_);
      auto it = watched_.find(id);
      if (it == watched_.end() || it->second.epoch != w.epoch) continue;  // unwatched meanwhile
      if (!keep) {
        watched_.erase(it);
      } else {
        it->second.done = std::move(w.done);
        it->second.last_error = std::move(w.last_error);
        it->second.busy = false;
      }
    }
  }
}

bool CheckpointUploader::LookAt(const std::string& job_id, Watched& w) {
  const std::vector<Entry> entries = Published(w.dir);
  if (entries.empty() || w.done.count(entries.back().name) > 0) return true;
  const Entry& newest = entries.back();
  v1::CheckpointUploader who;
  who.set_job_id(job_id);
  who.set_epoch(w.epoch);
  who.set_node_name(options_.node_name);
  checkpoint::UploadStats stats;
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::Checkpoint> done =
      checkpoint::Upload(*stub_, who, w.attempt, (fs::path(w.dir) / newest.name).string(),
                         options_.call_timeout, &stats, Transfer());
  {
    absl::MutexLock lock(&mu_);
    bytes_sent_ += stats.bytes_sent;
  }
  if (done.ok()) {
    // It and everything before it are done: the older ones are superseded.
    for (const Entry& e : entries) w.done.insert(e.name);
    w.last_error.clear();
    absl::MutexLock lock(&mu_);
    uploads_++;
    Log("job %s: checkpoint %s uploaded as #%d: %d bytes, %d of %d chunks sent, %.2f s", job_id,
        newest.name, done->seq(), done->size_bytes(), stats.chunks_sent, stats.chunks,
        absl::ToDoubleSeconds(absl::Now() - start));
    return true;
  }
  const absl::StatusCode code = done.status().code();
  if (code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kNotFound) {
    Log("job %s: checkpoint uploads end: %s", job_id, done.status().message());
    return false;
  }
  if (code == absl::StatusCode::kInvalidArgument) {
    // The job published something schedd will never take (a link, a bad path): skip it.
    w.done.insert(newest.name);
    Log("job %s: checkpoint %s skipped: %s", job_id, newest.name, done.status().message());
    return true;
  }
  if (std::string error(done.status().message()); error != w.last_error) {
    Log("job %s: checkpoint %s not uploaded yet, will try again: %s", job_id, newest.name, error);
    w.last_error = std::move(error);
  }
  return true;
}

absl::StatusOr<checkpoint::Downloaded> CheckpointUploader::FetchNewest(
    const std::string& job_id, const std::string& dest_dir, const std::string& for_job) {
  return checkpoint::Download(*stub_, job_id, /*seq=*/0, dest_dir, options_.call_timeout,
                              for_job, Transfer());
}

checkpoint::TransferOptions CheckpointUploader::Transfer() const {
  checkpoint::TransferOptions t;
  t.lanes = options_.threads;
  return t;
}

uint64_t CheckpointUploader::uploads() const {
  absl::MutexLock lock(&mu_);
  return uploads_;
}

uint64_t CheckpointUploader::bytes_sent() const {
  absl::MutexLock lock(&mu_);
  return bytes_sent_;
}

}  // namespace sched::agent
