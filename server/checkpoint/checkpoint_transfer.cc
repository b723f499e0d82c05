#include "server/checkpoint/checkpoint_transfer.h"

#include <memory>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "server/checkpoint/checkpoint_files.h"

namespace sched::checkpoint {
namespace {

constexpr int kMaxAsk = 10'000;  // chunk names per FindMissingChunks

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
  std::vector<LocalChunk> chunks;
  absl::StatusOr<v1::Checkpoint> manifest = Describe(path, &chunks);
  if (!manifest.ok()) return manifest.status();
  // Each distinct chunk once, in order.
  std::vector<const LocalChunk*> unique;
  std::set<std::string> seen;
  for (const LocalChunk& c : chunks) {
    if (seen.insert(c.sha256).second) unique.push_back(&c);
  }
  if (stats != nullptr) stats->chunks += unique.size();
  // A chunk dropped by schedd between the ask and the commit (with an old checkpoint) makes the
  // commit ABORTED: ask again, once.
  for (int round = 0;; ++round) {
    std::set<std::string> missing;
    for (size_t from = 0; from < unique.size(); from += kMaxAsk) {
      v1::FindMissingChunksRequest req;
      *req.mutable_uploader() = uploader;
      for (size_t i = from; i < std::min(unique.size(), from + kMaxAsk); ++i) {
        req.add_chunks(unique[i]->sha256);
      }
      v1::FindMissingChunksResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, timeout);
      if (absl::Status s = FromGrpc(stub.FindMissingChunks(&ctx, req, &resp)); !s.ok()) return s;
      missing.insert(resp.missing().begin(), resp.missing().end());
    }
    if (!missing.empty()) {
      grpc::ClientContext ctx;
      SetDeadline(ctx, timeout);
      v1::PutChunksResponse resp;
      std::unique_ptr<grpc::ClientWriterInterface<v1::PutChunkRequest>> writer =
          stub.PutChunks(&ctx, &resp);
      bool first = true;
      absl::Status local;
      for (const LocalChunk* c : unique) {
        if (missing.count(c->sha256) == 0) continue;
        absl::StatusOr<std::string> data = ReadChunk(*c);
        if (!data.ok()) {
          local = data.status();
          break;
        }
        v1::PutChunkRequest req;
        if (first) *req.mutable_uploader() = uploader;
        first = false;
        req.set_sha256(c->sha256);
        const uint64_t size = data->size();
        req.set_data(*std::move(data));
        if (!writer->Write(req)) break;  // the stream ended: Finish says why
        if (stats != nullptr) {
          stats->chunks_sent++;
          stats->bytes_sent += size;
        }
      }
      if (!local.ok()) {
        ctx.TryCancel();
        writer->Finish().ok();
        return local;
      }
      writer->WritesDone();
      if (absl::Status s = FromGrpc(writer->Finish()); !s.ok()) return s;
    }
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
