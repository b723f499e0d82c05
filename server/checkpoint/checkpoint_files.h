#pragma once

// Checkpoints on disk, for all three sides: the agent reads what a job published, schedd checks
// what arrives, and the agent and schedctl write a downloaded one back out. Names and paths that
// came over the network are checked here before any of them touches a file system.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sched/v1/checkpoint_service.pb.h"

namespace sched::checkpoint {

// Files are cut into chunks of this many bytes (the last one shorter).
inline constexpr size_t kChunkBytes = 4 << 20;
inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxPathBytes = 1024;
inline constexpr size_t kMaxFiles = 100'000;
// No checkpoint is larger (schedd's own cap, --max_checkpoint_bytes, is lower).
inline constexpr uint64_t kMaxCheckpointBytes = uint64_t{1} << 50;

// SHA-256, fed in pieces; hex digest in lowercase.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  std::string HexDigest();  // once

 private:
  void* ctx_;  // EVP_MD_CTX
};
std::string Sha256Hex(absl::string_view data);

// A published checkpoint's name: letters, digits, '.', '_' and '-', at most kMaxNameBytes, not
// starting with '.' nor ending in ".tmp" (those are how a job writes one before publishing it).
absl::Status CheckName(absl::string_view name);
// A name a job writes under before it publishes: skipped by the agent.
bool IsTemporaryName(absl::string_view name);
// A file's path inside a checkpoint: relative, '/'-separated, no empty, "." or ".." parts, no
// NUL or backslash, at most kMaxPathBytes.
absl::Status CheckRelativePath(absl::string_view path);
// 64 lowercase hex characters.
absl::Status CheckSha256Hex(absl::string_view sha);
// The shape of a manifest: its name, every path (unique, none inside another file), every
// chunk's name, and chunk counts that fit the sizes. INVALID_ARGUMENT saying what is wrong.
absl::Status CheckManifest(const v1::Checkpoint& manifest);

// Where the bytes of one chunk of a local checkpoint are.
struct LocalChunk {
  std::string sha256;  // empty until hashed
  std::string file;    // full path
  uint64_t offset = 0;
  uint64_t size = 0;
  bool last = false;  // the file's last chunk
};

// Lays out the checkpoint published at `path` (a folder, or a single file) without reading it: a
// manifest with its name (the last part of `path`), its files in path order with their sizes and
// modes, and as many chunk names as each file has chunks, left empty; `chunks` gets where each
// chunk is, in manifest order. A symlink, device or other special file anywhere in it is refused
// (INVALID_ARGUMENT), as are names CheckName or CheckRelativePath refuse.
absl::StatusOr<v1::Checkpoint> Layout(const std::string& path, std::vector<LocalChunk>* chunks);
// Reads and hashes chunks [begin, end) on up to `threads` threads, setting each one's sha256.
// DATA_LOSS when a file is shorter or longer than when it was laid out.
absl::Status HashChunks(std::vector<LocalChunk>& chunks, size_t begin, size_t end, int threads);
// Copies the chunks' sha256s into the manifest's chunk names, in order.
void NameChunks(const std::vector<LocalChunk>& chunks, v1::Checkpoint& manifest);
// Layout, HashChunks and NameChunks in one: the whole manifest.
absl::StatusOr<v1::Checkpoint> Describe(const std::string& path, std::vector<LocalChunk>* chunks,
                                        int threads = 1);

// Reads local chunks, keeping the last file open.
class ChunkReader {
 public:
  ChunkReader() = default;
  ~ChunkReader();
  ChunkReader(const ChunkReader&) = delete;
  ChunkReader& operator=(const ChunkReader&) = delete;
  // `chunk`'s bytes into `out`, whose buffer is reused. DATA_LOSS when the file is shorter than
  // it was laid out, or longer at its last chunk.
  absl::Status Read(const LocalChunk& chunk, std::string& out);

 private:
  std::string file_;
  int fd_ = -1;
};

// The bytes of `chunk`, checked against its sha256 (DATA_LOSS when the file changed since).
absl::StatusOr<std::string> ReadChunk(const LocalChunk& chunk);

// Writes a checkpoint out as its bytes arrive in manifest order, into `dest_dir`/.tmp-<name>,
// checking each file's size and each chunk's sha256 as its last byte arrives (DATA_LOSS at the
// first that does not match); Finish() renames it to `dest_dir`/<name>. The manifest is checked
// first (CheckManifest); `dest_dir`/<name> must not exist yet.
//
// With `verify_threads` > 1, chunks are checked on that many threads of the Writer's own while
// the bytes after them are written: a wrong chunk is then reported by a later Add or by
// Finish, and nothing is renamed into place before every chunk passed.
class Writer {
 public:
  static absl::StatusOr<std::unique_ptr<Writer>> Start(const std::string& dest_dir,
                                                       const v1::Checkpoint& manifest,
                                                       int verify_threads = 1);
  ~Writer();  // removes the partial folder unless Finish() succeeded
  absl::Status Add(absl::string_view data);
  // The same, keeping `data` (not a copy of it) while its chunks are checked.
  absl::Status Add(std::string&& data);
  // The final path. FAILED_PRECONDITION / DATA_LOSS when bytes are missing or wrong.
  absl::StatusOr<std::string> Finish();

 private:
  class Verifier;
  Writer();
  absl::Status AddOwned(absl::string_view data, const std::shared_ptr<const std::string>& owner);
  absl::Status OpenNext();
  absl::Status CloseCurrent();
  std::string FileName(const v1::CheckpointFile& f) const;

  v1::Checkpoint manifest_;
  std::string tmp_path_, final_path_;
  int file_ = 0;  // index into manifest_.files(): the one being written
  int fd_ = -1;
  uint64_t written_ = 0;           // of the current file
  std::unique_ptr<Sha256> chunk_;  // of the current chunk, checked here
  std::unique_ptr<Sha256> whole_;  // of the current file, when its manifest names one
  // Checked on the Verifier's threads instead: the current chunk's parts, and what holds them.
  std::unique_ptr<Verifier> verifier_;
  std::vector<std::shared_ptr<const std::string>> owners_;
  std::vector<absl::string_view> parts_;
  bool finished_ = false;
};

}  // namespace sched::checkpoint
