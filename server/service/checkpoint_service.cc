#include "server/service/checkpoint_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/checkpoint/checkpoint_files.h"
#include "server/service/status.h"

namespace sched {
namespace {

constexpr int kMaxAsk = 10'000;          // chunk names in one FindMissingChunks
constexpr size_t kPieceBytes = 1 << 20;  // data in one CheckpointPiece

}  // namespace

absl::Status CheckpointServiceImpl::CheckUploader(const auth::Caller& caller,
                                                  const v1::CheckpointUploader& u) const {
  if (u.job_id().empty() || u.node_name().empty() || u.epoch() == 0) {
    return absl::InvalidArgumentError("uploader: job_id, epoch and node_name are required");
  }
  // An agent with a node certificate uploads only as that node.
  if (absl::Status s = auth::Authorizer::CheckNode(caller, u.node_name()); !s.ok()) return s;
  return scheduler_->CheckLease(u.node_name(), JobRef{u.job_id(), u.epoch()});
}

grpc::Status CheckpointServiceImpl::FindMissingChunks(grpc::ServerContext* ctx,
                                                      const v1::FindMissingChunksRequest* req,
                                                      v1::FindMissingChunksResponse* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kAgentWork);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (absl::Status s = CheckUploader(*caller, req->uploader()); !s.ok()) return ToGrpcStatus(s);
  if (req->chunks_size() > kMaxAsk) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxAsk, " chunks in one FindMissingChunks")));
  }
  for (const std::string& sha : req->chunks()) {
    if (absl::Status s = checkpoint::CheckSha256Hex(sha); !s.ok()) return ToGrpcStatus(s);
    if (!store_->HasChunk(sha)) resp->add_missing(sha);
  }
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::PutChunks(grpc::ServerContext* ctx,
                                              grpc::ServerReader<v1::PutChunkRequest>* reader,
                                              v1::PutChunksResponse* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kAgentWork);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  v1::PutChunkRequest req;
  bool first = true;
  while (reader->Read(&req)) {
    if (first) {
      if (absl::Status s = CheckUploader(*caller, req.uploader()); !s.ok()) return ToGrpcStatus(s);
      first = false;
    }
    if (absl::Status s = store_->PutChunk(req.sha256(), req.data()); !s.ok()) {
      uploads_failed_++;
      return ToGrpcStatus(s);
    }
    resp->set_chunks_stored(resp->chunks_stored() + 1);
    resp->set_bytes_stored(resp->bytes_stored() + req.data().size());
  }
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::CommitCheckpoint(grpc::ServerContext* ctx,
                                                     const v1::CommitCheckpointRequest* req,
                                                     v1::Checkpoint* resp) {
  grpc::Status s = Commit(ctx, req, resp);
  (s.ok() ? uploads_ok_ : uploads_failed_)++;
  return s;
}

grpc::Status CheckpointServiceImpl::Commit(grpc::ServerContext* ctx,
                                           const v1::CommitCheckpointRequest* req,
                                           v1::Checkpoint* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kAgentWork);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (absl::Status s = CheckUploader(*caller, req->uploader()); !s.ok()) return ToGrpcStatus(s);
  v1::Checkpoint manifest;
  manifest.set_job_id(req->uploader().job_id());
  manifest.set_epoch(req->uploader().epoch());
  manifest.set_node(req->uploader().node_name());
  manifest.set_attempt(req->attempt());
  manifest.set_name(req->name());
  manifest.set_is_dir(req->is_dir());
  *manifest.mutable_files() = req->files();
  if (absl::StatusOr<Job> job = scheduler_->GetJob(req->uploader().job_id()); job.ok()) {
    manifest.set_project(job->spec.project);
  }
  const absl::Time now = absl::Now();
  manifest.mutable_create_time()->set_seconds(absl::ToUnixSeconds(now));
  manifest.mutable_create_time()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(absl::ToUnixSeconds(now)))));
  // The lease again, right before the manifest becomes the newest: a node that lost the job
  // while it uploaded must not publish over the new holder's checkpoints.
  if (absl::Status s = CheckUploader(*caller, req->uploader()); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<v1::Checkpoint> committed = store_->Commit(std::move(manifest));
  if (!committed.ok()) return ToGrpcStatus(committed.status());
  *resp = *std::move(committed);
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::ListCheckpoints(grpc::ServerContext* ctx,
                                                    const v1::ListCheckpointsRequest* req,
                                                    v1::ListCheckpointsResponse* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kRead);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<Job> job = scheduler_->GetJob(req->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (absl::Status s =
          auth::Authorizer::CheckProject(*caller, auth::Action::kRead, job->spec.project);
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  const std::string* id = &job->id;
  for (v1::Checkpoint& c : store_->List(*id)) *resp->add_checkpoints() = std::move(c);
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::GetCheckpoint(grpc::ServerContext* ctx,
                                                  const v1::GetCheckpointRequest* req,
                                                  grpc::ServerWriter<v1::CheckpointPiece>* writer) {
  // Readers in the job's project, and agents (a resumed attempt starts from it).
  absl::StatusOr<auth::Caller> caller = auth_->Authenticate(*ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<Job> job = scheduler_->GetJob(req->job_id());
  const absl::Status allowed =
      caller->role == v1::ROLE_AGENT
          ? auth_->Allow(*caller, auth::Action::kAgentWork)
          : auth_->Allow(*caller, auth::Action::kRead, job.ok() ? job->spec.project : "");
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  if (!job.ok()) return ToGrpcStatus(job.status());
  // An agent with a node certificate downloads only for a job leased to its node, or as an
  // input of one.
  bool input_of_held = false;
  if (!caller->node.empty() && job->node != caller->node && !req->for_job().empty()) {
    absl::StatusOr<Job> reader = scheduler_->GetJob(req->for_job());
    input_of_held =
        reader.ok() && reader->node == caller->node &&
        std::any_of(reader->spec.inputs.begin(), reader->spec.inputs.end(),
                    [&](const auto& input) { return input.second == job->id; });
  }
  if (!caller->node.empty() && job->node != caller->node && !input_of_held) {
    return ToGrpcStatus(
        absl::PermissionDeniedError(absl::StrCat(caller->Name(), " does not hold job ", job->id)));
  }
  const std::string* id = &job->id;
  absl::StatusOr<v1::Checkpoint> c = store_->Get(*id, req->seq());
  if (!c.ok()) return ToGrpcStatus(c.status());
  v1::CheckpointPiece piece;
  *piece.mutable_manifest() = *c;
  if (!writer->Write(piece)) return grpc::Status::CANCELLED;
  for (const v1::CheckpointFile& f : c->files()) {
    for (const std::string& sha : f.chunks()) {
      // In pieces well under a client's default 4 MiB message limit, each read straight into
      // the message.
      bool cancelled = false;
      absl::Status s = store_->ReadChunkPieces(sha, kPieceBytes, [&](std::string& data) {
        piece.Clear();
        piece.mutable_data()->swap(data);
        if (!writer->Write(piece)) {
          cancelled = true;
          return absl::CancelledError("the client went away");
        }
        piece.mutable_data()->swap(data);  // its buffer read into again
        return absl::OkStatus();
      });
      if (cancelled) return grpc::Status::CANCELLED;
      // Dropped with an older checkpoint since the manifest was read: this one was too.
      if (s.code() == absl::StatusCode::kNotFound) {
        return ToGrpcStatus(absl::AbortedError(
            absl::StrCat("checkpoint ", c->seq(), " of job ", *id, " was dropped meanwhile")));
      }
      if (!s.ok()) return ToGrpcStatus(s);
    }
  }
  return grpc::Status::OK;
}

}  // namespace sched
