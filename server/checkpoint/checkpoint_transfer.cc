#include "server/checkpoint/checkpoint_transfer.h"

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

namespace {

// Chunks the reader may hold ahead of the sender, and pieces the receiver ahead of the writer.
constexpr size_t kAhead = 4;

// Hands items from one thread to another, at most kAhead waiting: Put blocks while full, Take
// while empty. After Close, Put refuses and Take drains what is left, then says there is none.
template <typename T>
class Handoff {
 public:
  bool Put(T item) {
    absl::MutexLock lock(&mu_);
    auto room = [this] { return closed_ || items_.size() < kAhead; };
    mu_.Await(absl::Condition(&room));
    if (closed_) return false;
    items_.push_back(std::move(item));
    return true;
  }
  std::optional<T> Take() {
    absl::MutexLock lock(&mu_);
    auto some = [this] { return closed_ || !items_.empty(); };
    mu_.Await(absl::Condition(&some));
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

 private:
  absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

struct Chunk {
  std::string sha256;
  std::string data;
};

// Reads and hashes a checkpoint's chunks on a thread of its own, kAhead ahead of the caller, so
// the hashing here overlaps schedd's checking of the chunks already sent.
class ChunkReader {
 public:
  explicit ChunkReader(const std::string& path)
      : thread_([this, path] {
          absl::StatusOr<v1::Checkpoint> m =
              ReadCheckpoint(path, [this](const LocalChunk& c, std::string& data) {
                if (chunks_.Put(Chunk{c.sha256, std::move(data)})) return absl::OkStatus();
                return absl::CancelledError("upload stopped");
              });
          manifest_ = std::move(m);
          chunks_.Close();
        }) {}

  ~ChunkReader() {
    chunks_.Close();
    thread_.join();
  }

  // The next chunk, or nullopt once all were read (then manifest() says how it ended).
  std::optional<Chunk> Next() { return chunks_.Take(); }

  // Once Next() said there are no more.
  const absl::StatusOr<v1::Checkpoint>& manifest() const { return manifest_; }

 private:
  Handoff<Chunk> chunks_;
  absl::StatusOr<v1::Checkpoint> manifest_ = absl::UnknownError("unread");
  std::thread thread_;  // last: started once the rest is ready
};

}  // namespace

absl::StatusOr<v1::Checkpoint> Upload(v1::CheckpointService::StubInterface& stub,
                                      const v1::CheckpointUploader& uploader, uint32_t attempt,
                                      const std::string& path, absl::Duration timeout,
                                      UploadStats* stats) {
  // One pass over the files, read and hashed once on a thread of their own; every kBatch chunks
  // schedd is asked which it lacks, and those go out on one PutChunks stream while the reading
  // goes on. A chunk dropped by schedd between the ask and the commit (with an old checkpoint)
  // makes the commit ABORTED: the whole upload runs again, once.
  for (int round = 0;; ++round) {
    UploadStats counted;
    std::set<std::string> seen;
    std::vector<Chunk> batch;
    grpc::ClientContext put_ctx;
    SetDeadline(put_ctx, timeout);
    v1::PutChunksResponse put_resp;
    std::unique_ptr<grpc::ClientWriterInterface<v1::PutChunkRequest>> writer;
    bool broken = false;  // the stream ended early: Finish says why
    auto send_batch = [&]() -> absl::Status {
      if (batch.empty()) return absl::OkStatus();
      v1::FindMissingChunksRequest ask;
      *ask.mutable_uploader() = uploader;
      for (const Chunk& c : batch) ask.add_chunks(c.sha256);
      v1::FindMissingChunksResponse missing;
      grpc::ClientContext ctx;
      SetDeadline(ctx, timeout);
      if (absl::Status s = FromGrpc(stub.FindMissingChunks(&ctx, ask, &missing)); !s.ok()) {
        return s;
      }
      const std::set<std::string> lacking(missing.missing().begin(), missing.missing().end());
      for (Chunk& c : batch) {
        if (lacking.count(c.sha256) == 0 || broken) continue;
        v1::PutChunkRequest req;
        if (writer == nullptr) {
          writer = stub.PutChunks(&put_ctx, &put_resp);
          *req.mutable_uploader() = uploader;
        }
        req.set_sha256(std::move(c.sha256));
        const uint64_t size = c.data.size();
        req.set_data(std::move(c.data));
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
    absl::StatusOr<v1::Checkpoint> manifest = absl::UnknownError("unread");
    {
      ChunkReader reader(path);
      while (sending.ok()) {
        std::optional<Chunk> c = reader.Next();
        if (!c.has_value()) break;
        if (!seen.insert(c->sha256).second) continue;
        counted.chunks++;
        batch.push_back(*std::move(c));
        if (batch.size() == kBatch) sending = send_batch();
      }
      // On a sending error the reader is stopped by its destructor, so its manifest is unread.
      if (sending.ok()) manifest = reader.manifest();
    }
    if (sending.ok() && manifest.ok()) sending = send_batch();
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
    if (!sending.ok()) return sending;
    if (!manifest.ok()) return manifest.status();
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
                                    const std::string& dest_dir, absl::Duration timeout,
                                    const std::string& for_job) {
  v1::GetCheckpointRequest req;
  req.set_job_id(job_id);
  req.set_seq(seq);
  req.set_for_job(for_job);
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  std::unique_ptr<grpc::ClientReaderInterface<v1::CheckpointPiece>> reader =
      stub.GetCheckpoint(&ctx, req);
  v1::CheckpointPiece piece;
  Downloaded out;
  std::unique_ptr<Writer> writer;
  // The bytes are checked and written on a thread of their own while the next piece arrives.
  Handoff<std::string> pieces;
  absl::Status written;  // the writing thread's, read once it has been joined
  std::thread writing;
  absl::Status local;
  while (local.ok() && reader->Read(&piece)) {
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
      writing = std::thread([&] {
        while (std::optional<std::string> data = pieces.Take()) {
          written = writer->Add(*data);
          if (!written.ok()) break;
        }
        pieces.Close();  // a Put waiting on a full handoff is let go
      });
    } else if (writer == nullptr) {
      local = absl::DataLossError("data before the manifest");
    } else if (!pieces.Put(std::move(*piece.mutable_data()))) {
      local = absl::CancelledError("the writing stopped");  // `written` says why
    }
  }
  pieces.Close();
  if (writing.joinable()) writing.join();
  if (!written.ok()) local = written;
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
