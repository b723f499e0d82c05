#include "server/checkpoint/checkpoint_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "openssl/evp.h"

namespace sched::checkpoint {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("writing", path);
    data.remove_prefix(n);
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes at `offset` into `out` (whose buffer is reused). DATA_LOSS when
// the file is shorter than that.
absl::Status ReadExactly(int fd, uint64_t offset, uint64_t size, const std::string& path,
                         std::string& out) {
  // Grown once to a chunk's size and kept: resizing within the capacity writes nothing.
  out.resize(size);
  size_t got = 0;
  while (got < size) {
    const ssize_t n = pread(fd, out.data() + got, size - got, offset + got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("reading", path);
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path, " changed after it was published: it is shorter than it was"));
    }
    got += n;
  }
  return absl::OkStatus();
}

// Adds the file at `full` as `rel` to `manifest` with its size, mode and as many (empty) chunk
// names as it has chunks, and where each chunk is to `chunks`.
absl::Status AddFile(const std::string& full, const std::string& rel, v1::Checkpoint& manifest,
                     std::vector<LocalChunk>* chunks) {
  struct stat st;
  if (lstat(full.c_str(), &st) != 0) return Errno("reading", full);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(full, " is a link or a special file; only files and folders are kept"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  v1::CheckpointFile* file = manifest.add_files();
  file->set_path(rel);
  file->set_mode(st.st_mode & 07777);
  file->set_size_bytes(size);
  for (uint64_t offset = 0; offset < size; offset += kChunkBytes) {
    file->add_chunks();
    if (chunks != nullptr) {
      chunks->push_back(LocalChunk{"", full, offset, std::min<uint64_t>(kChunkBytes, size - offset),
                                   offset + kChunkBytes >= size});
    }
  }
  manifest.set_size_bytes(manifest.size_bytes() + size);
  return absl::OkStatus();
}

}  // namespace

// ---- Sha256

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(absl::string_view data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string Sha256Hex(absl::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.HexDigest();
}

// ---- Names and paths

bool IsTemporaryName(absl::string_view name) {
  return absl::StartsWith(name, ".") || absl::EndsWith(name, ".tmp");
}

absl::Status CheckName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint name must be 1 to ", kMaxNameBytes, " characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint name ", absl::CEscape(name),
                       ": only letters, digits, '.', '_' and '-' are allowed"));
    }
  }
  if (IsTemporaryName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint name ", name, " is a temporary one (starts with '.' or ends in .tmp)"));
  }
  return absl::OkStatus();
}

absl::Status CheckRelativePath(absl::string_view path) {
  if (path.empty() || path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("file path must be 1 to ", kMaxPathBytes, " characters"));
  }
  if (path.find('\0') != absl::string_view::npos || path.find('\\') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("file path ", absl::CEscape(path), " has a NUL or a backslash"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("file path ", path, " is absolute"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("file path ", path, " has an empty, \".\" or \"..\" part"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSha256Hex(absl::string_view sha) {
  if (sha.size() != 64 || !std::all_of(sha.begin(), sha.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk name ", absl::CEscape(sha.substr(0, 80)),
                     " is not a sha256 (64 lowercase hex characters)"));
  }
  return absl::OkStatus();
}

absl::Status CheckManifest(const v1::Checkpoint& manifest) {
  if (absl::Status s = CheckName(manifest.name()); !s.ok()) return s;
  if (manifest.files_size() > static_cast<int>(kMaxFiles)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a checkpoint holds at most ", kMaxFiles, " files"));
  }
  if (!manifest.is_dir() && (manifest.files_size() != 1 || !manifest.files(0).path().empty())) {
    return absl::InvalidArgumentError(
        "a checkpoint published as a file has exactly one file, with an empty path");
  }
  std::set<std::string> paths;
  uint64_t total = 0;
  for (const v1::CheckpointFile& f : manifest.files()) {
    if (manifest.is_dir()) {
      if (absl::Status s = CheckRelativePath(f.path()); !s.ok()) return s;
      if (!paths.insert(f.path()).second) {
        return absl::InvalidArgumentError(absl::StrCat("file path ", f.path(), " is listed twice"));
      }
    }
    if (!f.sha256().empty()) {
      if (absl::Status s = CheckSha256Hex(f.sha256()); !s.ok()) return s;
    }
    for (const std::string& c : f.chunks()) {
      if (absl::Status s = CheckSha256Hex(c); !s.ok()) return s;
    }
    // Without overflow: a size near 2^64 must not wrap to a small chunk count.
    const uint64_t want = f.size_bytes() / kChunkBytes + (f.size_bytes() % kChunkBytes != 0);
    if (static_cast<uint64_t>(f.chunks_size()) != want) {
      return absl::InvalidArgumentError(absl::StrCat("file ", f.path(), " of ", f.size_bytes(),
                                                     " bytes should have ", want, " chunks, has ",
                                                     f.chunks_size()));
    }
    if (f.mode() > 07777) {
      return absl::InvalidArgumentError(absl::StrCat("file ", f.path(), ": bad mode ", f.mode()));
    }
    if (f.size_bytes() > kMaxCheckpointBytes - total) {
      return absl::InvalidArgumentError(
          absl::StrCat("the files hold over ", kMaxCheckpointBytes, " bytes in all"));
    }
    total += f.size_bytes();
  }
  // A file may not also be a folder of another ("a" and "a/b").
  for (const std::string& p : paths) {
    auto next = paths.upper_bound(p);
    if (next != paths.end() && absl::StartsWith(*next, absl::StrCat(p, "/"))) {
      return absl::InvalidArgumentError(
          absl::StrCat("file path ", p, " is both a file and a folder of ", *next));
    }
  }
  if (manifest.size_bytes() != 0 && manifest.size_bytes() != total) {
    return absl::InvalidArgumentError(
        absl::StrCat("size_bytes ", manifest.size_bytes(), " is not the files' total ", total));
  }
  return absl::OkStatus();
}

// ---- Reading a local checkpoint

absl::StatusOr<v1::Checkpoint> Layout(const std::string& path, std::vector<LocalChunk>* chunks) {
  const fs::path root(path);
  v1::Checkpoint manifest;
  manifest.set_name(root.filename().string());
  if (absl::Status s = CheckName(manifest.name()); !s.ok()) return s;
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(root, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("checkpoint ", path, ": ", ec.message()));
  if (fs::is_regular_file(st)) {
    manifest.set_is_dir(false);
    if (absl::Status s = AddFile(path, "", manifest, chunks); !s.ok()) return s;
    return manifest;
  }
  if (!fs::is_directory(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", path, " is neither a file nor a folder"));
  }
  manifest.set_is_dir(true);
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status s = it->symlink_status(ec);
    if (ec) break;
    const std::string rel = fs::relative(it->path(), root, ec).generic_string();
    if (ec) break;
    if (fs::is_directory(s)) continue;
    if (!fs::is_regular_file(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", path, ": ", rel,
                       " is a link or a special file; only files and folders "
                       "are kept"));
    }
    if (absl::Status c = CheckRelativePath(rel); !c.ok()) return c;
    files.push_back(rel);
    if (files.size() > kMaxFiles) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", path, " has more than ", kMaxFiles, " files"));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("reading ", path, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  for (const std::string& rel : files) {
    if (absl::Status s = AddFile((root / rel).string(), rel, manifest, chunks); !s.ok()) return s;
  }
  return manifest;
}

absl::Status HashChunks(std::vector<LocalChunk>& chunks, size_t begin, size_t end, int threads) {
  end = std::min(end, chunks.size());
  if (begin >= end) return absl::OkStatus();
  std::atomic<size_t> next{begin};
  std::atomic<bool> failed{false};
  std::vector<absl::Status> errors(std::max(threads, 1));
  auto work = [&](int t) {
    std::string buffer;
    ChunkReader reader;
    for (size_t i = next++; i < end && !failed; i = next++) {
      absl::Status s = reader.Read(chunks[i], buffer);
      if (!s.ok()) {
        errors[t] = std::move(s);
        failed = true;
        return;
      }
      chunks[i].sha256 = Sha256Hex(buffer);
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads && begin + t < end; ++t) helpers.emplace_back(work, t);
  work(0);
  for (std::thread& h : helpers) h.join();
  for (absl::Status& e : errors) {
    if (!e.ok()) return e;
  }
  return absl::OkStatus();
}

void NameChunks(const std::vector<LocalChunk>& chunks, v1::Checkpoint& manifest) {
  size_t i = 0;
  for (v1::CheckpointFile& f : *manifest.mutable_files()) {
    for (std::string& name : *f.mutable_chunks()) name = chunks[i++].sha256;
  }
}

absl::StatusOr<v1::Checkpoint> Describe(const std::string& path, std::vector<LocalChunk>* chunks,
                                        int threads) {
  std::vector<LocalChunk> local;
  std::vector<LocalChunk>& where = chunks != nullptr ? *chunks : local;
  where.clear();
  absl::StatusOr<v1::Checkpoint> manifest = Layout(path, &where);
  if (!manifest.ok()) return manifest;
  if (absl::Status s = HashChunks(where, 0, where.size(), threads); !s.ok()) return s;
  NameChunks(where, *manifest);
  return manifest;
}

ChunkReader::~ChunkReader() {
  if (fd_ >= 0) close(fd_);
}

absl::Status ChunkReader::Read(const LocalChunk& chunk, std::string& out) {
  if (fd_ < 0 || file_ != chunk.file) {
    if (fd_ >= 0) close(fd_);
    file_ = chunk.file;
    // Not blocked by a FIFO put in the file's place since it was laid out, and refusing one.
    fd_ = open(chunk.file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) return Errno("opening", chunk.file);
    struct stat st;
    if (fstat(fd_, &st) != 0) return Errno("reading", chunk.file);
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          chunk.file, " is no longer a plain file; only files and folders are kept"));
    }
  }
  if (absl::Status s = ReadExactly(fd_, chunk.offset, chunk.size, chunk.file, out); !s.ok()) {
    return s;
  }
  if (chunk.last) {
    // A file that grew since it was laid out is still being written.
    char more;
    ssize_t n;
    while ((n = pread(fd_, &more, 1, chunk.offset + chunk.size)) < 0 && errno == EINTR) {
    }
    if (n != 0) {
      return absl::DataLossError(
          absl::StrCat(chunk.file, " changed after it was published: it is longer than it was"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadChunk(const LocalChunk& chunk) {
  std::string data;
  ChunkReader reader;
  if (absl::Status s = reader.Read(chunk, data); !s.ok()) return s;
  if (Sha256Hex(data) != chunk.sha256) {
    return absl::DataLossError(
        absl::StrCat(chunk.file, " changed after it was published (a chunk no longer matches)"));
  }
  return data;
}

// ---- Writing one out

// Checks chunks against their names on threads of its own, a few waiting at most.
class Writer::Verifier {
 public:
  struct Job {
    std::vector<std::shared_ptr<const std::string>> owners;  // keep `parts` alive
    std::vector<absl::string_view> parts;
    std::string want;
    std::string file;  // for the message
    uint64_t end = 0;  // the offset the chunk ends at, in `file`
  };

  explicit Verifier(int threads) : limit_(2 * threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~Verifier() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }

  // Queues `job`, waiting while the queue is full. The first wrong chunk found so far, if any.
  absl::Status Submit(Job job) {
    absl::MutexLock lock(&mu_);
    auto room = [this] { return !error_.ok() || jobs_.size() < limit_; };
    mu_.Await(absl::Condition(&room));
    if (!error_.ok()) return error_;
    jobs_.push_back(std::move(job));
    return absl::OkStatus();
  }
  absl::Status error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }
  // Once every queued chunk was checked: the first wrong one, if any.
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this] { return jobs_.empty() && busy_ == 0; };
    mu_.Await(absl::Condition(&done));
    return error_;
  }

 private:
  void Loop() {
    while (true) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        auto some = [this] { return stop_ || !jobs_.empty(); };
        mu_.Await(absl::Condition(&some));
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        busy_++;
      }
      Sha256 sha;
      for (absl::string_view part : job.parts) sha.Update(part);
      const std::string got = sha.HexDigest();
      absl::MutexLock lock(&mu_);
      busy_--;
      if (got != job.want && error_.ok()) {
        error_ = absl::DataLossError(absl::StrCat("file ", job.file, ": bytes ending at ", job.end,
                                                  " hash to ", got, ", the manifest says ",
                                                  job.want));
        jobs_.clear();
      }
    }
  }

  const size_t limit_;
  absl::Mutex mu_;
  std::deque<Job> jobs_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;  // last: started once the rest is ready
};

Writer::Writer() = default;

absl::StatusOr<std::unique_ptr<Writer>> Writer::Start(const std::string& dest_dir,
                                                      const v1::Checkpoint& manifest,
                                                      int verify_threads) {
  if (absl::Status s = CheckManifest(manifest); !s.ok()) return s;
  std::unique_ptr<Writer> w(new Writer());
  if (verify_threads > 1) w->verifier_ = std::make_unique<Verifier>(verify_threads);
  w->manifest_ = manifest;
  w->final_path_ = (fs::path(dest_dir) / manifest.name()).string();
  w->tmp_path_ = (fs::path(dest_dir) / absl::StrCat(".tmp-", manifest.name())).string();
  std::error_code ec;
  if (fs::exists(fs::symlink_status(w->final_path_, ec))) {
    return absl::AlreadyExistsError(absl::StrCat(w->final_path_, " already exists"));
  }
  fs::create_directories(dest_dir, ec);
  fs::remove_all(w->tmp_path_, ec);
  if (manifest.is_dir()) {
    fs::create_directory(w->tmp_path_, ec);
    if (ec) return absl::InternalError(absl::StrCat("creating ", w->tmp_path_, ": ", ec.message()));
  }
  if (absl::Status s = w->OpenNext(); !s.ok()) return s;
  return w;
}

Writer::~Writer() {
  verifier_.reset();  // before the bytes it may still be reading go
  if (fd_ >= 0) close(fd_);
  if (!finished_) {
    std::error_code ec;
    fs::remove_all(tmp_path_, ec);
  }
}

absl::Status Writer::OpenNext() {
  // Files of no bytes need no data: they are written as they come up.
  while (file_ < manifest_.files_size()) {
    const v1::CheckpointFile& f = manifest_.files(file_);
    const std::string path =
        manifest_.is_dir() ? (fs::path(tmp_path_) / f.path()).string() : tmp_path_;
    std::error_code ec;
    if (manifest_.is_dir()) fs::create_directories(fs::path(path).parent_path(), ec);
    fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
               (f.mode() & 0777) | 0600);
    if (fd_ < 0) return Errno("creating", path);
    written_ = 0;
    chunk_ = std::make_unique<Sha256>();
    whole_ = f.sha256().empty() ? nullptr : std::make_unique<Sha256>();
    if (f.size_bytes() > 0) return absl::OkStatus();
    if (absl::Status s = CloseCurrent(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string Writer::FileName(const v1::CheckpointFile& f) const {
  return f.path().empty() ? manifest_.name() : f.path();
}

absl::Status Writer::CloseCurrent() {
  const v1::CheckpointFile& f = manifest_.files(file_);
  const int fd = fd_;
  fd_ = -1;
  const bool synced = fsync(fd) == 0;
  close(fd);
  // Manifests from agents before chunk-only checking also name the whole file's sha256.
  if (whole_ != nullptr) {
    if (const std::string digest = whole_->HexDigest(); digest != f.sha256()) {
      return absl::DataLossError(absl::StrCat("file ", FileName(f), ": sha256 ", digest,
                                              ", the manifest says ", f.sha256()));
    }
  }
  if (!synced) return Errno("syncing", tmp_path_);
  file_++;
  return absl::OkStatus();
}

absl::Status Writer::Add(absl::string_view data) {
  if (verifier_ == nullptr) return AddOwned(data, nullptr);
  return Add(std::string(data));
}

absl::Status Writer::Add(std::string&& data) {
  if (verifier_ == nullptr) return AddOwned(data, nullptr);
  auto owner = std::make_shared<const std::string>(std::move(data));
  return AddOwned(*owner, owner);
}

absl::Status Writer::AddOwned(absl::string_view data,
                              const std::shared_ptr<const std::string>& owner) {
  if (verifier_ != nullptr) {
    if (absl::Status s = verifier_->error(); !s.ok()) return s;
  }
  while (!data.empty()) {
    if (file_ >= manifest_.files_size() || fd_ < 0) {
      return absl::InvalidArgumentError("more bytes than the manifest's files hold");
    }
    const v1::CheckpointFile& f = manifest_.files(file_);
    // Up to the end of the current chunk, so each chunk is checked against its name as it ends.
    const uint64_t chunk_end =
        std::min<uint64_t>(f.size_bytes(), (written_ / kChunkBytes + 1) * kChunkBytes);
    const size_t take = std::min<uint64_t>(data.size(), chunk_end - written_);
    const absl::string_view piece = data.substr(0, take);
    if (absl::Status s = WriteAll(fd_, piece, tmp_path_); !s.ok()) return s;
    // Its writeback starts now, so the file's sync at its end finds little left to do.
    sync_file_range(fd_, written_, take, SYNC_FILE_RANGE_WRITE);
    if (verifier_ != nullptr) {
      owners_.push_back(owner);
      parts_.push_back(piece);
    } else {
      chunk_->Update(piece);
    }
    if (whole_ != nullptr) whole_->Update(piece);
    written_ += take;
    data.remove_prefix(take);
    if (written_ == chunk_end) {
      const std::string& want = f.chunks(static_cast<int>((written_ - 1) / kChunkBytes));
      if (verifier_ != nullptr) {
        Verifier::Job job{std::move(owners_), std::move(parts_), want, FileName(f), written_};
        owners_.clear();
        parts_.clear();
        if (absl::Status s = verifier_->Submit(std::move(job)); !s.ok()) return s;
      } else if (const std::string got = chunk_->HexDigest(); got != want) {
        return absl::DataLossError(absl::StrCat("file ", FileName(f), ": bytes ending at ",
                                                written_, " hash to ", got, ", the manifest says ",
                                                want));
      }
      chunk_ = std::make_unique<Sha256>();
    }
    if (written_ == f.size_bytes()) {
      if (absl::Status s = CloseCurrent(); !s.ok()) return s;
      if (absl::Status s = OpenNext(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Writer::Finish() {
  if (verifier_ != nullptr) {
    if (absl::Status s = verifier_->Wait(); !s.ok()) return s;
  }
  if (file_ < manifest_.files_size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", manifest_.name(),
                     " ended early: ", manifest_.files_size() - file_, " file(s) incomplete"));
  }
  std::error_code ec;
  fs::rename(tmp_path_, final_path_, ec);
  if (ec) return absl::InternalError(absl::StrCat("renaming to ", final_path_, ": ", ec.message()));
  finished_ = true;
  return final_path_;
}

}  // namespace sched::checkpoint
