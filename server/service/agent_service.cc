#include "server/service/agent_service.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/auth/tls.h"
#include "server/common/status_macros.h"
#include "server/convert/convert.h"
#include "server/core/job_spec_validation.h"
#include "server/service/status.h"
#include "server/service/stream_sender.h"

namespace sched {
namespace {

using Sender = AgentStreams::Sender;

// The scheduler's handle on one agent stream. Outlives the stream safely: sends after the end
// are dropped by the sender.
class StreamLink final : public AgentLink {
 public:
  explicit StreamLink(std::shared_ptr<Sender> sender) : sender_(std::move(sender)) {}

  void Assign(const Job& job) override {
    v1::ServerMessage msg;
    v1::Assignment* a = msg.mutable_assignment();
    JobToProto(job, a->mutable_job());
    a->set_epoch(job.epoch);
    sender_->Send(std::move(msg));
  }
  void Cancel(const std::string& job_id, uint64_t epoch) override {
    v1::ServerMessage msg;
    msg.mutable_cancel()->set_job_id(job_id);
    msg.mutable_cancel()->set_epoch(epoch);
    sender_->Send(std::move(msg));
  }
  void Stop(const std::string& job_id, uint64_t epoch, const std::string& reason) override {
    v1::ServerMessage msg;
    v1::StopJob* s = msg.mutable_stop();
    s->set_job_id(job_id);
    s->set_epoch(epoch);
    s->set_reason(reason);
    sender_->Send(std::move(msg));
  }
  void Drain() override {
    v1::ServerMessage msg;
    msg.mutable_drain();
    sender_->Send(std::move(msg));
  }

 private:
  std::shared_ptr<Sender> sender_;
};

std::vector<JobRef> RefsFromProto(const google::protobuf::RepeatedPtrField<v1::JobRef>& refs) {
  std::vector<JobRef> out;
  out.reserve(refs.size());
  for (const v1::JobRef& r : refs) out.push_back(JobRef{r.job_id(), r.epoch()});
  return out;
}

// A report the scheduler refused: tell the agent, keep the stream.
void Reject(Sender& sender, const std::string& job_id, uint64_t epoch, const absl::Status& status) {
  v1::ServerMessage msg;
  v1::Rejected* r = msg.mutable_rejected();
  r->set_job_id(job_id);
  r->set_epoch(epoch);
  r->set_code(static_cast<int>(status.code()));
  r->set_message(std::string(status.message()));
  sender.Send(std::move(msg));
}

class ConnectReactor final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage> {
 public:
  ConnectReactor(Scheduler* scheduler, AgentStreams* streams, auth::Caller caller,
                 StreamSlots* slots, std::map<std::string, std::string> labels)
      : labels_(std::move(labels)),
        scheduler_(scheduler),
        slots_(slots),
        streams_(streams),
        caller_(std::move(caller)),
        sender_(std::make_shared<Sender>([this](const v1::ServerMessage* m) { StartWrite(m); },
                                         [this](grpc::Status s) { Finish(std::move(s)); })) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      sender_->Finish(grpc::Status::OK);  // the agent closed its side
      return;
    }
    if (session_ == 0) {
      HandleRegister();  // reading resumes once the node is registered
      return;
    }
    absl::Status status = Handle();
    if (!status.ok()) {
      sender_->Finish(ToGrpcStatus(status));
      return;
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override { sender_->OnWriteDone(ok); }
  void OnDone() override {
    if (registered_) streams_->Remove(name_, sender_.get());
    if (session_ != 0) scheduler_->DisconnectAgent(name_, session_);
    if (slots_ != nullptr) slots_->Give();
    delete this;
  }

 private:
  void HandleRegister() {
    if (!in_.has_register_()) {
      sender_->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "the first message on a Connect stream must be register"));
      return;
    }
    const v1::Register& reg = in_.register_();
    absl::StatusOr<NodeCapabilities> caps = CapabilitiesFromProto(reg.capabilities());
    if (!caps.ok()) {
      sender_->Finish(ToGrpcStatus(caps.status()));
      return;
    }
    // An agent with a node certificate connects only as that node.
    if (absl::Status s = auth::Authorizer::CheckNode(caller_, reg.node_name()); !s.ok()) {
      sender_->Finish(ToGrpcStatus(s));
      return;
    }
    // Labels the node's join token carried win over what the agent says of itself.
    for (const auto& [k, v] : labels_) caps->labels[k] = v;
    name_ = reg.node_name();
    streams_->Add(name_, sender_);
    registered_ = true;
    scheduler_->ConnectAgent(
        name_, std::move(*caps), RefsFromProto(reg.running()),
        std::make_shared<StreamLink>(sender_), [this](absl::StatusOr<uint64_t> session) {
          if (!session.ok()) {
            sender_->Finish(ToGrpcStatus(session.status()));
            return;
          }
          session_ = *session;
          v1::ServerMessage msg;
          const SchedulerOptions& o = scheduler_->options();
          msg.mutable_register_ack()->set_lease_ttl_ms(absl::ToInt64Milliseconds(o.lease_ttl));
          msg.mutable_register_ack()->set_heartbeat_interval_ms(
              absl::ToInt64Milliseconds(o.heartbeat_interval));
          sender_->Send(std::move(msg));
          StartRead(&in_);
        });
  }

  // Errors returned end the stream (the agent reconnects); per-job refusals do not.
  absl::Status Handle() {
    switch (in_.msg_case()) {
      case v1::AgentMessage::kHeartbeat: {
        const v1::Heartbeat& hb = in_.heartbeat();
        absl::Status s = scheduler_->Heartbeat(name_, session_, RefsFromProto(hb.running()));
        if (!s.ok()) return s;
        // The owner's GPUs: told on a stream's first heartbeat, then while the agent names any
        // and once more when it names none again.
        if (owner_gpus_may_be_set_ || hb.owner_gpus_size() > 0) {
          s = scheduler_->SetOwnerGpus(
              name_, session_, std::set<uint32_t>(hb.owner_gpus().begin(), hb.owner_gpus().end()),
              hb.owner_detail());
          if (!s.ok()) return s;
          owner_gpus_may_be_set_ = hb.owner_gpus_size() > 0;
        }
        v1::ServerMessage msg;
        msg.mutable_heartbeat_ack();
        sender_->Send(std::move(msg));
        return absl::OkStatus();
      }
      case v1::AgentMessage::kUpdate: {
        const v1::JobUpdate& u = in_.update();
        absl::StatusOr<JobState> state = JobStateFromProto(u.state());
        if (!state.ok()) {
          Reject(*sender_, u.job_id(), u.epoch(), state.status());
          return absl::OkStatus();
        }
        JobReport report{u.job_id(), u.epoch(), *state, u.exit_code(), u.message()};
        report.preempted = u.preempted();
        report.resumed_from = u.resumed_from();
        report.resumed_from_seq = u.resumed_from_seq();
        scheduler_->ReportJob(name_, session_, std::move(report),
                              [sender = sender_, id = u.job_id(), epoch = u.epoch(),
                               final = IsTerminal(*state)](absl::StatusOr<Job> job) {
                                if (!job.ok()) {
                                  Reject(*sender, id, epoch, job.status());
                                  return;
                                }
                                // A final report is acknowledged once durable, also when it sent
                                // the job back to the queue (preempted).
                                if (!final) return;
                                v1::ServerMessage msg;
                                v1::UpdateAck* ack = msg.mutable_update_ack();
                                ack->set_job_id(id);
                                ack->set_epoch(epoch);
                                ack->set_state(JobStateToProto(job->state));
                                sender->Send(std::move(msg));
                              });
        return absl::OkStatus();
      }
      case v1::AgentMessage::kPreempting: {
        const v1::Preempting& p = in_.preempting();
        return scheduler_->NotePreempting(name_, session_, p.source().substr(0, 64),
                                          p.seconds_left());
      }
      case v1::AgentMessage::kLog: {
        v1::AgentLogChunk* chunk = in_.mutable_log();
        absl::Status s = scheduler_->AppendLog(name_, session_, {chunk->job_id(), chunk->epoch()},
                                               LogStreamFromProto(chunk->stream()),
                                               std::move(*chunk->mutable_data()));
        if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) {
          Reject(*sender_, chunk->job_id(), chunk->epoch(), s);
          return absl::OkStatus();
        }
        return s;
      }
      case v1::AgentMessage::kMetrics: {
        const v1::AgentMetrics& m = in_.metrics();
        std::vector<Scheduler::MetricReport> points;
        points.reserve(static_cast<size_t>(m.points_size()));
        for (const v1::MetricPoint& p : m.points()) points.push_back({p.step(), p.name(), p.value()});
        absl::Status s =
            scheduler_->ReportMetrics(name_, session_, {m.job_id(), m.epoch()}, points);
        // A bad or stale report is the job's; the stream goes on.
        if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s) || absl::IsInvalidArgument(s)) {
          Reject(*sender_, m.job_id(), m.epoch(), s);
          return absl::OkStatus();
        }
        return s;
      }
      case v1::AgentMessage::kRegister:
        return absl::InvalidArgumentError("register: sent twice on one stream");
      default:
        return absl::InvalidArgumentError("empty agent message");
    }
  }

  const std::map<std::string, std::string> labels_;
  Scheduler* const scheduler_;
  StreamSlots* const slots_;
  AgentStreams* const streams_;
  const auth::Caller caller_;
  std::shared_ptr<Sender> sender_;
  v1::AgentMessage in_;
  std::string name_;
  bool registered_ = false;
  uint64_t session_ = 0;
  // schedd may hold owner's GPUs for the node (from this stream or an earlier one).
  bool owner_gpus_may_be_set_ = true;
};

}  // namespace

void AgentStreams::Add(const std::string& node, const std::shared_ptr<Sender>& sender) {
  absl::MutexLock lock(&mu_);
  live_.emplace(node, sender);
}

void AgentStreams::Remove(const std::string& node, const Sender* sender) {
  absl::MutexLock lock(&mu_);
  auto [from, to] = live_.equal_range(node);
  for (auto it = from; it != to;) {
    std::shared_ptr<Sender> s = it->second.lock();
    it = (s == nullptr || s.get() == sender) ? live_.erase(it) : std::next(it);
  }
}

int AgentStreams::CutOff(const std::string& node, const grpc::Status& status) {
  std::vector<std::shared_ptr<Sender>> senders;
  {
    absl::MutexLock lock(&mu_);
    auto [from, to] = live_.equal_range(node);
    for (auto it = from; it != to; ++it) {
      if (std::shared_ptr<Sender> s = it->second.lock()) senders.push_back(std::move(s));
    }
  }
  for (const auto& s : senders) s->Finish(status);
  return static_cast<int>(senders.size());
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* ctx) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kAgentConnect);
  if (!caller.ok()) return RefuseBidi<v1::AgentMessage, v1::ServerMessage>(caller.status());
  if (options_.streams != nullptr) {
    if (absl::Status s = options_.streams->Take(); !s.ok()) {
      return RefuseBidi<v1::AgentMessage, v1::ServerMessage>(s);
    }
  }
  std::map<std::string, std::string> labels;
  if (options_.identities != nullptr && !caller->node.empty()) {
    labels = options_.identities->Labels(caller->token_id.substr(caller->token_id.find(':') + 1));
  }
  return new ConnectReactor(scheduler_, &streams_, *std::move(caller), options_.streams,
                            std::move(labels));
}

absl::Status AgentServiceImpl::Issue(const std::string& node, const std::string& csr_pem,
                                     const std::map<std::string, std::string>& labels,
                                     v1::NodeCertificate* resp) {
  SCHED_ASSIGN_OR_RETURN(
      std::string cert,
      auth::SignNodeCertificate(options_.tls_dir, csr_pem, node, options_.node_cert_lifetime));
  SCHED_ASSIGN_OR_RETURN(auth::CertificateInfo info, auth::ReadCertificate(cert));
  google::protobuf::Map<std::string, std::string> kept(labels.begin(), labels.end());
  SCHED_RETURN_IF_ERROR(options_.identities->Issued(info.serial_hex, node, info.not_after, kept));
  SCHED_ASSIGN_OR_RETURN(std::string ca, auth::ReadCaBundle(options_.tls_dir));
  resp->set_certificate_pem(std::move(cert));
  resp->set_ca_pem(std::move(ca));
  TimeToProto(info.not_after, resp->mutable_expire_time());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AgentServiceImpl::Join(grpc::CallbackServerContext* ctx,
                                                 const v1::JoinRequest* req,
                                                 v1::NodeCertificate* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kAgentJoin));
    if (options_.identities == nullptr) {
      return absl::FailedPreconditionError(
          "schedd serves no TLS: agents connect with their token, there is nothing to join");
    }
    const std::string& node = req->node_name();
    absl::Status joined = absl::OkStatus();
    if (absl::Status csr = auth::CheckCertificateRequest(req->csr_pem()); !csr.ok()) {
      joined = csr;
    } else if (!IsValidName(node)) {
      joined = absl::InvalidArgumentError(absl::StrCat(
          "node_name: must be 1-63 characters of letters, digits, '.', '_' or '-', got \"",
          node.substr(0, 64), "\""));
    } else if (options_.identities->RevokedAt(node) >= caller.token_create_time) {
      joined = absl::PermissionDeniedError(absl::StrCat(
          "node ", node, " was revoked after this token was made: join with a newer token"));
    } else if (options_.identities->HasLive(node, absl::Now())) {
      // Else a join token could take over a working node's name and its jobs.
      joined = absl::AlreadyExistsError(absl::StrCat(
          "node ", node, " already has a certificate: revoke it first (schedctl node revoke ", node,
          ") or join under another name"));
    } else {
      joined = auth_->UseJoin(caller);
      if (joined.ok()) joined = Issue(node, req->csr_pem(), caller.token_labels, resp);
    }
    auth_->Audit(*ctx, caller, "node_join", absl::StrCat("node ", req->node_name().substr(0, 253)),
                 "", joined);
    return joined;
  }();
  return FinishUnary(ctx, status);
}

grpc::ServerUnaryReactor* AgentServiceImpl::RenewCertificate(grpc::CallbackServerContext* ctx,
                                                             const v1::RenewCertificateRequest* req,
                                                             v1::NodeCertificate* resp) {
  absl::Status status = [&]() -> absl::Status {
    SCHED_ASSIGN_OR_RETURN(auth::Caller caller, auth_->Check(*ctx, auth::Action::kAgentConnect));
    if (options_.identities == nullptr) {
      return absl::FailedPreconditionError("schedd serves no TLS: there is no certificate");
    }
    if (caller.node.empty()) {
      return absl::PermissionDeniedError(
          "renewing takes the node's current certificate (mTLS), not a token");
    }
    // The renewed certificate keeps the labels the node joined with.
    absl::Status renewed = Issue(
        caller.node, req->csr_pem(),
        options_.identities->Labels(caller.token_id.substr(caller.token_id.find(':') + 1)), resp);
    auth_->Audit(*ctx, caller, "node_renew", absl::StrCat("node ", caller.node), "", renewed);
    return renewed;
  }();
  return FinishUnary(ctx, status);
}

}  // namespace sched
