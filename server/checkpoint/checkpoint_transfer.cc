#include "server/checkpoint/checkpoint_transfer.h"

#include <memory>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "server/checkpoint/checkpoint_files.h"

namespace sched::checkpoint {
namespace {

// Chunks read ahead before schedd is asked which it lacks: 32 MiB held at most, and one
// round trip per 32 MiB however far schedd is.
constexpr size_t kBatch = 8;

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

absl::StatusOr<v1::Checkpoint> Upload(v1::CheckpointService::StubInterface& stub,
                                      const v1::CheckpointUploader& uploader, uint32_t attempt,
                                      const std::string& path, absl::Duration timeout,
                                      UploadStats* stats) {
  // One pass over the files: each chunk is read and hashed once; every kBatch chunks schedd is
  // asked which it lacks, and those go out on one PutChunks stream while the pass goes on. A
  // chunk dropped by schedd between the ask and the commit (with an old checkpoint) makes the
  // commit ABORTED: the whole upload runs again, once.
  for (int round = 0;; ++round) {
    UploadStats counted;
    std::set<std::string> seen;
    std::vector<std::pair<std::string, std::string>> batch;  // sha256, bytes
    grpc::ClientContext put_ctx;
    SetDeadline(put_ctx, timeout);
    v1::PutChunksResponse put_resp;
    std::unique_ptr<grpc::ClientWriterInterface<v1::PutChunkRequest>> writer;
    bool broken = false;  // the stream ended early: Finish says why
    auto send_batch = [&]() -> absl::Status {
      if (batch.empty()) return absl::OkStatus();
      v1::FindMissingChunksRequest ask;
      *ask.mutable_uploader() = uploader;
      for (const auto& [sha, data] : batch) ask.add_chunks(sha);
      v1::FindMissingChunksResponse missing;
      grpc::ClientContext ctx;
      SetDeadline(ctx, timeout);
      if (absl::Status s = FromGrpc(stub.FindMissingChunks(&ctx, ask, &missing)); !s.ok()) {
        return s;
      }
      const std::set<std::string> lacking(missing.missing().begin(), missing.missing().end());
      for (auto& [sha, data] : batch) {
        if (lacking.count(sha) == 0 || broken) continue;
        v1::PutChunkRequest req;
        if (writer == nullptr) {
          writer = stub.PutChunks(&put_ctx, &put_resp);
          *req.mutable_uploader() = uploader;
        }
        req.set_sha256(sha);
        const uint64_t size = data.size();
        req.set_data(std::move(data));
        if (!writer->Write(req)) {
          broken = true;
          break;
        }
        counted.chunks_sent++;
        counted.bytes_sent += size;
      }
      batch.clear();
      return absl::OkStatus();
    };
    absl::Status sending;
    absl::StatusOr<v1::Checkpoint> manifest =
        ReadCheckpoint(path, [&](const LocalChunk& c, std::string& data) {
          if (!seen.insert(c.sha256).second) return absl::OkStatus();
          counted.chunks++;
          batch.emplace_back(c.sha256, std::move(data));
          if (batch.size() < kBatch) return absl::OkStatus();
          sending = send_batch();
          return sending;
        });
    if (manifest.ok()) sending = send_batch();
    if (writer != nullptr) {
      if (!manifest.ok() || !sending.ok()) put_ctx.TryCancel();
      writer->WritesDone();
      const absl::Status put = FromGrpc(writer->Finish());
      if (manifest.ok() && sending.ok() && !put.ok()) sending = put;
    }
    if (stats != nullptr) {
      stats->chunks += counted.chunks;
      stats->chunks_sent += counted.chunks_sent;
      stats->bytes_sent += counted.bytes_sent;
    }
    if (!manifest.ok()) return manifest.status();
    if (!sending.ok()) return sending;
    v1::CommitCheckpointRequest req;
    *req.mutable_uploader() = uploader;
    req.set_attempt(attempt);
    req.set_name(manifest->name());
    req.set_is_dir(manifest->is_dir());
    *req.mutable_files() = manifest->files();
    v1::Checkpoint committed;
    grpc::ClientContext ctx;
    SetDeadline(ctx, timeout);
    absl::Status s = FromGrpc(stub.CommitCheckpoint(&ctx, req, &committed));
    if (s.ok()) return committed;
    if (s.code() != absl::StatusCode::kAborted || round > 0) return s;
  }
}

absl::StatusOr<Downloaded> Download(v1::CheckpointService::StubInterface& stub,
                                    const std::string& job_id, uint64_t seq,
                                    const std::string& dest_dir, absl::Duration timeout) {
  v1::GetCheckpointRequest req;
  req.set_job_id(job_id);
  req.set_seq(seq);
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  std::unique_ptr<grpc::ClientReaderInterface<v1::CheckpointPiece>> reader =
      stub.GetCheckpoint(&ctx, req);
  v1::CheckpointPiece piece;
  Downloaded out;
  std::unique_ptr<Writer> writer;
  absl::Status local;
  while (reader->Read(&piece)) {
    if (piece.has_manifest()) {
      if (writer != nullptr) {
        local = absl::DataLossError("a second manifest in one download");
        break;
      }
      out.manifest = piece.manifest();
      absl::StatusOr<std::unique_ptr<Writer>> w = Writer::Start(dest_dir, out.manifest);
      if (!w.ok()) {
        local = w.status();
        break;
      }
      writer = *std::move(w);
    } else if (writer == nullptr) {
      local = absl::DataLossError("data before the manifest");
      break;
    } else if (absl::Status s = writer->Add(piece.data()); !s.ok()) {
      local = s;
      break;
    }
  }
  if (!local.ok()) {
    ctx.TryCancel();
    reader->Finish().ok();
    return local;
  }
  if (absl::Status s = FromGrpc(reader->Finish()); !s.ok()) return s;
  if (writer == nullptr) return absl::DataLossError("the download held no manifest");
  absl::StatusOr<std::string> path = writer->Finish();
  if (!path.ok()) return path.status();
  out.path = *path;
  return out;
}

}  // namespace sched::checkpoint
