#include "server/checkpoint/checkpoint_transfer.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
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

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

namespace {

// Pieces the receiver may hold ahead of the writer.
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

// One of the upload's parallel PutChunks streams, opened when it first has a chunk to send.
struct Lane {
  grpc::ClientContext ctx;
  v1::PutChunksResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::PutChunkRequest>> stream;
  v1::PutChunkRequest request;  // its data buffer is read into again for each chunk
  checkpoint::ChunkReader reader;
  absl::Status local;  // a read that failed
  bool broken = false;  // the stream ended early: Finish says why
  uint64_t chunks_sent = 0;
  uint64_t bytes_sent = 0;
};

// Runs work(0 .. n-1) on n threads, the caller's among them, and waits for all.
void OnThreads(int n, const std::function<void(int)>& work) {
  std::vector<std::thread> helpers;
  for (int i = 1; i < n; ++i) helpers.emplace_back(work, i);
  work(0);
  for (std::thread& h : helpers) h.join();
}

}  // namespace

int TransferLanes() {
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 2, 8);
}

absl::StatusOr<v1::Checkpoint> Upload(v1::CheckpointService::StubInterface& stub,
                                      const v1::CheckpointUploader& uploader, uint32_t attempt,
                                      const std::string& path, absl::Duration timeout,
                                      UploadStats* stats, const TransferOptions& options) {
  // The checkpoint is laid out, then taken a window of chunks at a time: the window's chunks are
  // read and hashed on every lane at once, schedd is asked which it lacks, and those are read
  // again and sent over the lanes' PutChunks streams, in parallel, where schedd checks and
  // stores them on as many threads. Both sides' hashing, the larger part of the work, is so
  // spread over the cores. A chunk dropped by schedd between the ask and the commit (with an
  // old checkpoint) makes the commit ABORTED: the whole upload runs again, once.
  const int lanes = options.lanes > 0 ? options.lanes : TransferLanes();
  // schedd answers for at most 10,000 chunks at once.
  const size_t window = std::clamp<size_t>(options.window, 1, 10'000);
  for (int round = 0;; ++round) {
    std::vector<LocalChunk> chunks;
    absl::StatusOr<v1::Checkpoint> manifest = Layout(path, &chunks);
    if (!manifest.ok()) return manifest.status();
    std::vector<std::unique_ptr<Lane>> lane(lanes);
    for (auto& l : lane) l = std::make_unique<Lane>();
    for (auto& l : lane) SetDeadline(l->ctx, timeout);
    std::set<std::string> seen;
    UploadStats counted;
    absl::Status failed;
    for (size_t begin = 0; begin < chunks.size() && failed.ok(); begin += window) {
      const size_t end = std::min(chunks.size(), begin + window);
      failed = HashChunks(chunks, begin, end, lanes);
      if (!failed.ok()) break;
      v1::FindMissingChunksRequest ask;
      *ask.mutable_uploader() = uploader;
      for (size_t i = begin; i < end; ++i) {
        if (seen.insert(chunks[i].sha256).second) ask.add_chunks(chunks[i].sha256);
      }
      counted.chunks += ask.chunks_size();
      if (ask.chunks().empty()) continue;
      v1::FindMissingChunksResponse missing;
      grpc::ClientContext ctx;
      SetDeadline(ctx, timeout);
      failed = FromGrpc(stub.FindMissingChunks(&ctx, ask, &missing));
      if (!failed.ok()) break;
      std::set<std::string> lacking(missing.missing().begin(), missing.missing().end());
      std::vector<size_t> send;  // each lacking chunk once
      for (size_t i = begin; i < end; ++i) {
        if (lacking.erase(chunks[i].sha256) > 0) send.push_back(i);
      }
      if (send.empty()) continue;
      std::atomic<size_t> next{0};
      std::atomic<bool> stop{false};
      OnThreads(std::min<int>(lanes, send.size()), [&](int n) {
        Lane& l = *lane[n];
        for (size_t k = next++; k < send.size() && !stop && !l.broken; k = next++) {
          const LocalChunk& c = chunks[send[k]];
          l.local = l.reader.Read(c, *l.request.mutable_data());
          if (!l.local.ok()) {
            stop = true;
            break;
          }
          if (l.stream == nullptr) {
            l.stream = stub.PutChunks(&l.ctx, &l.response);
            *l.request.mutable_uploader() = uploader;
          }
          l.request.set_sha256(c.sha256);
          if (!l.stream->Write(l.request)) {
            l.broken = true;
            stop = true;
            break;
          }
          l.request.clear_uploader();
          l.chunks_sent++;
          l.bytes_sent += c.size;
        }
      });
      for (auto& l : lane) {
        if (failed.ok() && !l->local.ok()) failed = l->local;
      }
      if (std::any_of(lane.begin(), lane.end(), [](const auto& l) { return l->broken; })) break;
    }
    absl::Status put;
    for (auto& l : lane) {
      if (l->stream == nullptr) continue;
      if (!failed.ok()) l->ctx.TryCancel();
      l->stream->WritesDone();
      const absl::Status s = FromGrpc(l->stream->Finish());
      if (put.ok() && !s.ok()) put = s;
      counted.chunks_sent += l->chunks_sent;
      counted.bytes_sent += l->bytes_sent;
    }
    if (failed.ok()) failed = put;
    if (stats != nullptr) {
      stats->chunks += counted.chunks;
      stats->chunks_sent += counted.chunks_sent;
      stats->bytes_sent += counted.bytes_sent;
    }
    if (!failed.ok()) return failed;
    NameChunks(chunks, *manifest);
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
                                    const std::string& for_job, const TransferOptions& options) {
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
      // Each chunk's sha256 is checked on threads of the writer's own, so the checking is
      // spread over the cores while the writing goes on.
      absl::StatusOr<std::unique_ptr<Writer>> w =
          Writer::Start(dest_dir, out.manifest, options.lanes > 0 ? options.lanes : TransferLanes());
      if (!w.ok()) {
        local = w.status();
        break;
      }
      writer = *std::move(w);
      writing = std::thread([&] {
        while (std::optional<std::string> data = pieces.Take()) {
          written = writer->Add(std::move(*data));
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
