#include "server/checkpoint/checkpoint_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/checkpoint/checkpoint_files.h"

namespace sched {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kRecordPrefix = "k/";

std::string RecordKey(const std::string& job_id, uint64_t seq) {
  return absl::StrFormat("%s%s/%016x", kRecordPrefix, job_id, seq);
}

}  // namespace

CheckpointStore::CheckpointStore(CheckpointStoreOptions options, Store* store)
    : options_(std::move(options)), store_(store) {}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    CheckpointStoreOptions options, Store* store) {
  std::error_code ec;
  fs::create_directories(fs::path(options.root) / "chunks", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", options.root, ": ", ec.message()));
  }
  std::unique_ptr<CheckpointStore> cs(new CheckpointStore(std::move(options), store));
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> records =
      store->ScanRecords(std::string(kRecordPrefix));
  // A store that keeps no side records (a test's) has no checkpoints: commits will say so.
  if (!records.ok() && records.status().code() != absl::StatusCode::kUnimplemented) {
    return records.status();
  }
  if (!records.ok()) records.emplace();
  absl::MutexLock lock(&cs->mu_);
  for (const auto& [key, value] : *records) {
    v1::Checkpoint c;
    if (!c.ParseFromString(value)) {
      return absl::DataLossError(absl::StrCat("unreadable checkpoint record ", key));
    }
    for (const v1::CheckpointFile& f : c.files()) {
      for (const std::string& sha : f.chunks()) cs->refs_[sha]++;
    }
    cs->project_bytes_[c.project()] += c.size_bytes();
    cs->by_job_[c.job_id()].push_back(std::move(c));  // keys sort by seq within a job
  }
  // Chunks no checkpoint uses were left by uploads that never committed: an agent still
  // uploading finds them missing and sends them again.
  for (fs::recursive_directory_iterator it(fs::path(cs->options_.root) / "chunks", ec), end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    if (cs->refs_.contains(name)) {
      cs->chunks_++;
      cs->chunk_bytes_ += it->file_size(ec);
    } else {
      fs::remove(it->path(), ec);
    }
  }
  return cs;
}

std::string CheckpointStore::ChunkPath(const std::string& sha) const {
  return (fs::path(options_.root) / "chunks" / sha.substr(0, 2) / sha).string();
}

bool CheckpointStore::HasChunk(const std::string& sha) const {
  if (!checkpoint::CheckSha256Hex(sha).ok()) return false;
  std::error_code ec;
  return fs::is_regular_file(ChunkPath(sha), ec);
}

absl::Status CheckpointStore::PutChunk(const std::string& sha, absl::string_view data) {
  if (absl::Status s = checkpoint::CheckSha256Hex(sha); !s.ok()) return s;
  if (data.size() > checkpoint::kChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", sha, " has ", data.size(),
                                                   " bytes, over the limit of ",
                                                   checkpoint::kChunkBytes));
  }
  const std::string got = checkpoint::Sha256Hex(data);
  if (got != sha) {
    return absl::DataLossError(
        absl::StrCat("chunk ", sha, " arrived corrupted: its bytes hash to ", got));
  }
  const std::string path = ChunkPath(sha);
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return absl::OkStatus();  // stored already
  fs::create_directories(fs::path(path).parent_path(), ec);
  thread_local std::mt19937_64 rng(std::random_device{}());
  const std::string tmp = absl::StrFormat("%s.tmp-%016x", path, rng());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("creating ", tmp, ": ", std::strerror(errno)));
  absl::string_view left = data;
  while (!left.empty()) {
    const ssize_t n = write(fd, left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      fs::remove(tmp, ec);
      return absl::UnavailableError(absl::StrCat("writing ", tmp, ": ", std::strerror(e)));
    }
    left.remove_prefix(n);
  }
  // Synced when a checkpoint that uses it is committed (Commit); its writeback starts now, so
  // the disk works while the next chunks arrive and that sync finds little left to do.
  sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  close(fd);
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::UnavailableError(absl::StrCat("storing chunk ", sha));
  }
  absl::MutexLock lock(&mu_);
  chunks_++;
  chunk_bytes_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckpointStore::ReadChunk(const std::string& sha) const {
  if (absl::Status s = checkpoint::CheckSha256Hex(sha); !s.ok()) return s;
  const std::string path = ChunkPath(sha);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("chunk ", sha, " is not stored"));
  struct stat st;
  std::string data;
  if (fstat(fd, &st) == 0) data.resize(st.st_size);
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  close(fd);
  if (got != data.size()) return absl::DataLossError(absl::StrCat("chunk ", sha, " is short"));
  return data;
}

absl::Status CheckpointStore::ReadChunkPieces(
    const std::string& sha, size_t piece_bytes,
    const std::function<absl::Status(std::string&)>& take) const {
  if (absl::Status s = checkpoint::CheckSha256Hex(sha); !s.ok()) return s;
  const std::string path = ChunkPath(sha);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("chunk ", sha, " is not stored"));
  absl::Status status;
  std::string piece;
  while (status.ok()) {
    piece.resize(piece_bytes);
    size_t got = 0;
    while (got < piece.size()) {
      const ssize_t n = read(fd, piece.data() + got, piece.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        status =
            absl::DataLossError(absl::StrCat("reading chunk ", sha, ": ", std::strerror(errno)));
      if (n <= 0) break;
      got += n;
    }
    if (!status.ok() || got == 0) break;
    piece.resize(got);
    status = take(piece);
    if (got < piece_bytes) break;
  }
  close(fd);
  return status;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Commit(v1::Checkpoint manifest) {
  if (absl::Status s = checkpoint::CheckManifest(manifest); !s.ok()) return s;
  uint64_t total = 0;
  for (const v1::CheckpointFile& f : manifest.files()) {
    uint64_t file_bytes = 0;
    for (int i = 0; i < f.chunks_size(); ++i) {
      std::error_code ec;
      const uint64_t size = fs::file_size(ChunkPath(f.chunks(i)), ec);
      if (ec) {
        return absl::AbortedError(absl::StrCat("chunk ", f.chunks(i), " of ",
                                               f.path().empty() ? manifest.name() : f.path(),
                                               " is not stored: send it first"));
      }
      // Every chunk but the last is whole.
      const bool last = i + 1 == f.chunks_size();
      if ((!last && size != checkpoint::kChunkBytes) || size == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "chunk ", f.chunks(i), " has ", size, " bytes, which does not fit its place in ",
            f.path().empty() ? manifest.name() : f.path()));
      }
      file_bytes += size;
    }
    if (file_bytes != f.size_bytes()) {
      return absl::FailedPreconditionError(
          absl::StrCat("file ", f.path().empty() ? manifest.name() : f.path(), " is said to have ",
                       f.size_bytes(), " bytes; its chunks hold ", file_bytes));
    }
    total += file_bytes;
  }
  // Chunks are written without a sync; before the manifest is durable, so are they, and the
  // folders that name them.
  std::set<std::string> synced, folders;
  auto sync = [](const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    return ok;
  };
  for (const v1::CheckpointFile& f : manifest.files()) {
    for (const std::string& sha : f.chunks()) {
      if (!synced.insert(sha).second) continue;
      const std::string path = ChunkPath(sha);
      folders.insert(fs::path(path).parent_path().string());
      if (!sync(path)) {
        return absl::UnavailableError(
            absl::StrCat("syncing chunk ", sha, ": ", std::strerror(errno)));
      }
    }
  }
  for (const std::string& folder : folders) {
    if (!sync(folder)) {
      return absl::UnavailableError(absl::StrCat("syncing ", folder, ": ", std::strerror(errno)));
    }
  }
  if (total > options_.max_checkpoint_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "checkpoint of ", total, " bytes is over the limit of ", options_.max_checkpoint_bytes));
  }
  manifest.set_size_bytes(total);
  absl::MutexLock lock(&mu_);
  std::vector<v1::Checkpoint>& kept = by_job_[manifest.job_id()];
  if (options_.max_project_bytes > 0) {
    // What the project keeps once this one is in and the job's oldest beyond keep_per_job out.
    uint64_t after = project_bytes_[manifest.project()] + total;
    for (size_t i = 0; i + options_.keep_per_job < kept.size() + 1; ++i) {
      after -= kept[i].size_bytes();
    }
    if (after > options_.max_project_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "project ", manifest.project(), " would keep ", after,
          " bytes of checkpoints with this one, over its limit of ", options_.max_project_bytes,
          " (--max_checkpoint_bytes_per_project): lower keep, or free others"));
    }
  }
  manifest.set_seq(kept.empty() ? 1 : kept.back().seq() + 1);
  if (absl::Status s = store_->PutRecord(RecordKey(manifest.job_id(), manifest.seq()),
                                         manifest.SerializeAsString());
      !s.ok()) {
    return s;
  }
  for (const v1::CheckpointFile& f : manifest.files()) {
    for (const std::string& sha : f.chunks()) refs_[sha]++;
  }
  kept.push_back(manifest);
  project_bytes_[manifest.project()] += manifest.size_bytes();
  // The newest keep_per_job stay.
  if (kept.size() > options_.keep_per_job) {
    const size_t drop = kept.size() - options_.keep_per_job;
    std::vector<std::string> keys;
    for (size_t i = 0; i < drop; ++i) keys.push_back(RecordKey(kept[i].job_id(), kept[i].seq()));
    if (store_->DeleteRecords(keys).ok()) {
      for (size_t i = 0; i < drop; ++i) ReleaseLocked(kept[i]);
      kept.erase(kept.begin(), kept.begin() + drop);
    }
  }
  return manifest;
}

void CheckpointStore::ReleaseLocked(const v1::Checkpoint& c) {
  project_bytes_[c.project()] -= c.size_bytes();
  for (const v1::CheckpointFile& f : c.files()) {
    for (const std::string& sha : f.chunks()) {
      auto it = refs_.find(sha);
      if (it == refs_.end() || --it->second > 0) continue;
      refs_.erase(it);
      std::error_code ec;
      const std::string path = ChunkPath(sha);
      const uint64_t size = fs::file_size(path, ec);
      if (!ec && fs::remove(path, ec)) {
        chunks_--;
        chunk_bytes_ -= size;
      }
    }
  }
}

std::vector<v1::Checkpoint> CheckpointStore::List(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_job_.find(job_id);
  if (it == by_job_.end()) return {};
  return it->second;
}

absl::StatusOr<v1::Checkpoint> CheckpointStore::Get(const std::string& job_id, uint64_t seq) const {
  absl::MutexLock lock(&mu_);
  auto it = by_job_.find(job_id);
  if (it != by_job_.end() && !it->second.empty()) {
    if (seq == 0) return it->second.back();
    for (const v1::Checkpoint& c : it->second) {
      if (c.seq() == seq) return c;
    }
  }
  return absl::NotFoundError(seq == 0 ? absl::StrCat("job ", job_id, " has no checkpoint")
                                      : absl::StrCat("job ", job_id, " has no checkpoint ", seq,
                                                     " (the newest ones are kept)"));
}

uint64_t CheckpointStore::chunks() const {
  absl::MutexLock lock(&mu_);
  return chunks_;
}

uint64_t CheckpointStore::chunk_bytes() const {
  absl::MutexLock lock(&mu_);
  return chunk_bytes_;
}

}  // namespace sched
