#pragma once

// schedd's side of checkpoints: chunk files under <data_dir>/checkpoints, stored by their
// sha256 so that a chunk shared by checkpoints is kept once, and each checkpoint's manifest as a
// side record of the Store (key k/<job id>/<seq, 16 hex digits>). Keeps the newest
// `keep_per_job` checkpoints of each job and deletes the chunks no kept checkpoint uses.
// Thread-safe.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "sched/v1/checkpoint_service.pb.h"
#include "server/core/store.h"

namespace sched {

struct CheckpointStoreOptions {
  std::string root;  // chunks go in <root>/chunks/<first 2 hex digits>/<sha256>
  size_t keep_per_job = 3;
  // A checkpoint bigger than this is refused (RESOURCE_EXHAUSTED).
  uint64_t max_checkpoint_bytes = uint64_t{64} << 30;
  // All the checkpoints a project keeps, each counted at its full size; 0: no limit.
  uint64_t max_project_bytes = 0;
};

class CheckpointStore {
 public:
  // Loads the manifests from `store` (which must outlive this) and creates `root`.
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(CheckpointStoreOptions options,
                                                               Store* store);

  bool HasChunk(const std::string& sha) const;
  // Keeps `data` as chunk `sha`. INVALID_ARGUMENT for a bad name or a chunk over
  // checkpoint::kChunkBytes; DATA_LOSS when the bytes do not hash to `sha`.
  absl::Status PutChunk(const std::string& sha, absl::string_view data);
  absl::StatusOr<std::string> ReadChunk(const std::string& sha) const;
  // Chunk `sha`'s bytes in pieces of at most `piece_bytes`, each read straight into the string
  // shown to `take` (which may move it away). NOT_FOUND when it is not stored; `take`'s error
  // stops it.
  absl::Status ReadChunkPieces(const std::string& sha, size_t piece_bytes,
                               const std::function<absl::Status(std::string&)>& take) const;

  // Publishes `manifest` (job_id, name, attempt, epoch, node, create_time and files set by the
  // caller; seq and size are set here) once every chunk it names is here. INVALID_ARGUMENT for
  // a bad manifest (checkpoint::CheckManifest), ABORTED naming a chunk not stored (never sent,
  // or dropped with an old checkpoint since: find the missing ones again), FAILED_PRECONDITION
  // for a chunk whose size does not fit the file, RESOURCE_EXHAUSTED when over the size cap.
  absl::StatusOr<v1::Checkpoint> Commit(v1::Checkpoint manifest);
  // Oldest first.
  std::vector<v1::Checkpoint> List(const std::string& job_id) const;
  // seq 0: the newest. NOT_FOUND when there is none.
  absl::StatusOr<v1::Checkpoint> Get(const std::string& job_id, uint64_t seq) const;

  // Chunk files and their bytes, for metrics and tests.
  uint64_t chunks() const;
  uint64_t chunk_bytes() const;

 private:
  CheckpointStore(CheckpointStoreOptions options, Store* store);
  std::string ChunkPath(const std::string& sha) const;
  // Drops a reference to each chunk of `c`; deletes chunk files left with none.
  void ReleaseLocked(const v1::Checkpoint& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CheckpointStoreOptions options_;
  Store* const store_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<v1::Checkpoint>> by_job_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> refs_ ABSL_GUARDED_BY(mu_);  // by kept checkpoints
  absl::flat_hash_map<std::string, uint64_t> project_bytes_ ABSL_GUARDED_BY(mu_);
  uint64_t chunks_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t chunk_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sched
