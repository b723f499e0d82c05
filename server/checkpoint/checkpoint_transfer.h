#pragma once

// Moving checkpoints over CheckpointService: the agent's upload of what a job published, and
// the download that the agent (before a resumed attempt) and schedctl share.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"

namespace sched::checkpoint {

struct UploadStats {
  uint64_t chunks = 0;       // in the checkpoint, shared ones once
  uint64_t chunks_sent = 0;  // those schedd did not have
  uint64_t bytes_sent = 0;
};

// Parallel streams an upload uses, and threads the hashing runs on at each end: one per core,
// 2 to 8.
int TransferLanes();

struct TransferOptions {
  // An upload's parallel streams and hashing threads; a download's threads checking chunks.
  // 0: TransferLanes().
  int lanes = 0;
  // Chunks hashed, asked about and sent together (4 MiB each): what is read twice, once to hash
  // and once to send, while it is still in the page cache.
  size_t window = 64;
};

// Uploads the checkpoint published at `path` (its last part is its name) for the job, epoch and
// node `uploader` names, a window of chunks at a time: hashes the window's chunks on every lane,
// asks which of them schedd lacks, sends those over the lanes' parallel streams; then commits the
// manifest. Each call has `timeout`. Codes: schedd's (FAILED_PRECONDITION for a stale epoch),
// the local errors of Layout/HashChunks (DATA_LOSS for a file that changed meanwhile),
// UNAVAILABLE and the like when schedd cannot be reached.
absl::StatusOr<v1::Checkpoint> Upload(v1::CheckpointService::StubInterface& stub,
                                      const v1::CheckpointUploader& uploader, uint32_t attempt,
                                      const std::string& path, absl::Duration timeout,
                                      UploadStats* stats = nullptr,
                                      const TransferOptions& options = {});

struct Downloaded {
  v1::Checkpoint manifest;
  std::string path;  // dest_dir/<name>
};

// Brings checkpoint `seq` (0: the newest) of job `job_id` (or a unique prefix) into
// `dest_dir`/<name>, every chunk checked against its sha256 on `options.lanes` threads; nothing
// is left behind on failure.
// `for_job`: an agent fetching job_id's outputs as an input of the job it holds.
absl::StatusOr<Downloaded> Download(v1::CheckpointService::StubInterface& stub,
                                    const std::string& job_id, uint64_t seq,
                                    const std::string& dest_dir, absl::Duration timeout,
                                    const std::string& for_job = "",
                                    const TransferOptions& options = {});

}  // namespace sched::checkpoint
