#include "server/convert/convert.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace sched {

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  // Whole seconds, floored, and the nanoseconds past them: exact for every finite time (Unix
  // nanoseconds would saturate past the year 2262).
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
}

namespace {

// A Timestamp from outside (a request, a stored record) must lie in protobuf's range, years
// 1..9999: any other would not be written back as it was read.
absl::StatusOr<absl::Time> CheckedTime(const google::protobuf::Timestamp& ts,
                                       absl::string_view field) {
  constexpr int64_t kMinSeconds = -62'135'596'800;  // 0001-01-01T00:00:00Z
  constexpr int64_t kMaxSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z
  if (ts.seconds() < kMinSeconds || ts.seconds() > kMaxSeconds || ts.nanos() < 0 ||
      ts.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not a time between the years 1 and 9999 (seconds ", ts.seconds(),
                     ", nanos ", ts.nanos(), ")"));
  }
  return TimeFromProto(ts);
}

}  // namespace

absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return absl::InfinitePast();
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

v1::PlacementPolicy PlacementPolicyToProto(PlacementPolicy p) {
  switch (p) {
    case PlacementPolicy::kPreferLocal:
      return v1::PLACEMENT_POLICY_PREFER_LOCAL;
    case PlacementPolicy::kLocalOnly:
      return v1::PLACEMENT_POLICY_LOCAL_ONLY;
    case PlacementPolicy::kCheapest:
      return v1::PLACEMENT_POLICY_CHEAPEST;
    case PlacementPolicy::kCloudOnly:
      return v1::PLACEMENT_POLICY_CLOUD_ONLY;
  }
  return v1::PLACEMENT_POLICY_UNSPECIFIED;
}

absl::StatusOr<PlacementPolicy> PlacementPolicyFromProto(v1::PlacementPolicy p) {
  switch (p) {
    case v1::PLACEMENT_POLICY_UNSPECIFIED:
    case v1::PLACEMENT_POLICY_PREFER_LOCAL:
      return PlacementPolicy::kPreferLocal;
    case v1::PLACEMENT_POLICY_LOCAL_ONLY:
      return PlacementPolicy::kLocalOnly;
    case v1::PLACEMENT_POLICY_CHEAPEST:
      return PlacementPolicy::kCheapest;
    case v1::PLACEMENT_POLICY_CLOUD_ONLY:
      return PlacementPolicy::kCloudOnly;
    default:
      return absl::InvalidArgumentError(absl::StrCat("placement: unknown policy ", p));
  }
}

v1::SpotPolicy SpotPolicyToProto(SpotPolicy p) {
  switch (p) {
    case SpotPolicy::kAuto:
      return v1::SPOT_POLICY_AUTO;
    case SpotPolicy::kSpot:
      return v1::SPOT_POLICY_SPOT;
    case SpotPolicy::kOnDemand:
      return v1::SPOT_POLICY_ON_DEMAND;
  }
  return v1::SPOT_POLICY_UNSPECIFIED;
}

absl::StatusOr<SpotPolicy> SpotPolicyFromProto(v1::SpotPolicy p) {
  switch (p) {
    case v1::SPOT_POLICY_UNSPECIFIED:
    case v1::SPOT_POLICY_AUTO:
      return SpotPolicy::kAuto;
    case v1::SPOT_POLICY_SPOT:
      return SpotPolicy::kSpot;
    case v1::SPOT_POLICY_ON_DEMAND:
      return SpotPolicy::kOnDemand;
    default:
      return absl::InvalidArgumentError(absl::StrCat("spot: unknown policy ", p));
  }
}

v1::JobState JobStateToProto(JobState s) {
  switch (s) {
    case JobState::kPending:
      return v1::JOB_STATE_PENDING;
    case JobState::kAssigned:
      return v1::JOB_STATE_ASSIGNED;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kSucceeded:
      return v1::JOB_STATE_SUCCEEDED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
    case JobState::kStoppedEarly:
      return v1::JOB_STATE_STOPPED_EARLY;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

absl::StatusOr<JobState> JobStateFromProto(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_PENDING:
      return JobState::kPending;
    case v1::JOB_STATE_ASSIGNED:
      return JobState::kAssigned;
    case v1::JOB_STATE_RUNNING:
      return JobState::kRunning;
    case v1::JOB_STATE_SUCCEEDED:
      return JobState::kSucceeded;
    case v1::JOB_STATE_FAILED:
      return JobState::kFailed;
    case v1::JOB_STATE_CANCELLED:
      return JobState::kCancelled;
    case v1::JOB_STATE_STOPPED_EARLY:
      return JobState::kStoppedEarly;
    default:
      return absl::InvalidArgumentError(absl::StrCat("state: unknown job state ", s));
  }
}

void RedactSecrets(v1::Job* job) {
  for (v1::EnvVar& e : *job->mutable_spec()->mutable_env()) {
    if (e.secret()) e.clear_value();
  }
}

void JobSpecToProto(const JobSpec& spec, v1::JobSpec* out) {
  out->set_name(spec.name);
  out->set_project(spec.project);
  out->set_run(spec.run);
  out->set_setup(spec.setup);
  for (const auto& [name, value] : spec.env) {
    v1::EnvVar* e = out->add_env();
    e->set_name(name);
    e->set_value(value);
    e->set_secret(std::find(spec.secret_env.begin(), spec.secret_env.end(), name) !=
                  spec.secret_env.end());
  }
  v1::Resources* r = out->mutable_resources();
  r->set_gpus(spec.resources.gpus);
  r->set_gpu_memory_bytes(spec.resources.gpu_memory_bytes);
  r->set_gpu_memory_estimated(spec.resources.gpu_memory_estimated);
  for (const std::string& m : spec.resources.gpu_models) r->add_gpu_models(m);
  r->set_cpus(spec.resources.cpu_millis / 1000.0);
  r->set_memory_bytes(spec.resources.memory_bytes);
  r->set_share_gpu(spec.resources.share_gpu);
  out->set_priority(spec.priority);
  for (const auto& [k, v] : spec.labels) (*out->mutable_labels())[k] = v;
  if (spec.model.parameters != 0) {
    v1::ModelDescription* m = out->mutable_model();
    m->set_parameters(spec.model.parameters);
    m->set_precision(spec.model.precision);
    m->set_method(spec.model.method);
    m->set_optimizer(spec.model.optimizer);
    m->set_batch_size(spec.model.batch_size);
    m->set_sequence_length(spec.model.sequence_length);
    m->set_gradient_checkpointing(spec.model.gradient_checkpointing);
    m->set_lora_rank(spec.model.lora_rank);
  }
  if (spec.runtime > absl::ZeroDuration()) {
    out->mutable_runtime()->set_seconds(absl::ToInt64Seconds(spec.runtime));
    out->mutable_runtime()->set_gpu_model(spec.runtime_gpu_model);
  }
  if (spec.deadline != absl::InfiniteFuture()) TimeToProto(spec.deadline, out->mutable_deadline());
  out->set_max_cost(spec.max_cost);
  out->set_placement(PlacementPolicyToProto(spec.placement));
  out->set_spot(SpotPolicyToProto(spec.spot));
  if (spec.retry.max_restarts > 0) {
    v1::RetryPolicy* retry = out->mutable_retry();
    retry->set_max_restarts(spec.retry.max_restarts);
    for (int32_t code : spec.retry.exit_codes) retry->add_exit_codes(code);
    retry->set_backoff_seconds(absl::ToInt64Seconds(spec.retry.backoff));
    retry->set_max_backoff_seconds(absl::ToInt64Seconds(spec.retry.max_backoff));
  }
  out->set_max_duration_seconds(absl::ToInt64Seconds(spec.max_duration));
  if (spec.not_before != absl::InfinitePast()) {
    TimeToProto(spec.not_before, out->mutable_not_before());
  }
  for (const auto& [id, when] : spec.after) {
    v1::Dependency* d = out->add_after();
    d->set_job_id(id);
    d->set_when(when);
  }
  for (const std::string& path : spec.outputs) out->add_outputs(path);
  for (const auto& [name, id] : spec.inputs) {
    v1::JobInput* input = out->add_inputs();
    input->set_name(name);
    input->set_job_id(id);
  }
  // A run keeps its sweep's rules without the list of runs.
  if (!spec.sweep.empty() || !spec.sweep.metric.empty() || spec.sweep.max_parallel > 0 ||
      !spec.sweep.early_stopping.rule.empty()) {
    v1::Sweep* sw = out->mutable_sweep();
    for (const auto& [name, values] : spec.sweep.parameters) {
      v1::SweepParameter* p = sw->add_parameters();
      p->set_name(name);
      for (const std::string& v : values) p->add_values(v);
    }
    for (const auto& run : spec.sweep.runs) {
      sw->add_runs()->mutable_values()->insert(run.begin(), run.end());
    }
    sw->set_max_parallel(spec.sweep.max_parallel);
    sw->set_metric(spec.sweep.metric);
    sw->set_maximize(spec.sweep.maximize);
    const EarlyStopping& es = spec.sweep.early_stopping;
    if (!es.rule.empty()) {
      v1::EarlyStopping* e = sw->mutable_early_stopping();
      e->set_rule(es.rule);
      e->set_min_step(es.min_step);
      e->set_min_runs(es.min_runs);
      e->set_reduction_factor(es.reduction_factor);
      e->set_max_step(es.max_step);
    }
  }
}

absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& in) {
  JobSpec spec;
  spec.name = in.name();
  spec.project = in.project();
  spec.run = in.run();
  spec.setup = in.setup();
  for (const v1::EnvVar& e : in.env()) {
    spec.env.emplace_back(e.name(), e.value());
    if (e.secret()) spec.secret_env.push_back(e.name());
  }
  const v1::Resources& r = in.resources();
  spec.resources.gpus = r.gpus();
  spec.resources.gpu_memory_bytes = r.gpu_memory_bytes();
  spec.resources.gpu_memory_estimated = r.gpu_memory_estimated();
  spec.resources.gpu_models.assign(r.gpu_models().begin(), r.gpu_models().end());
  if (!std::isfinite(r.cpus()) || r.cpus() > 1e6) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources.cpus: must be a finite number of cores, got ", r.cpus()));
  }
  spec.resources.cpu_millis = static_cast<int64_t>(std::llround(r.cpus() * 1000));
  if (r.cpus() > 0 && spec.resources.cpu_millis == 0) spec.resources.cpu_millis = 1;
  spec.resources.memory_bytes = r.memory_bytes();
  spec.resources.share_gpu = r.share_gpu();
  spec.priority = in.priority();
  spec.labels.insert(in.labels().begin(), in.labels().end());
  if (in.has_model()) {
    const v1::ModelDescription& m = in.model();
    spec.model.parameters = m.parameters();
    spec.model.precision = m.precision();
    spec.model.method = m.method();
    spec.model.optimizer = m.optimizer();
    spec.model.batch_size = m.batch_size();
    spec.model.sequence_length = m.sequence_length();
    spec.model.gradient_checkpointing = m.gradient_checkpointing();
    spec.model.lora_rank = m.lora_rank();
  }
  if (in.has_runtime()) {
    if (in.runtime().seconds() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("runtime.seconds: must be >= 0, got ", in.runtime().seconds()));
    }
    spec.runtime = absl::Seconds(in.runtime().seconds());
    spec.runtime_gpu_model = in.runtime().gpu_model();
  }
  if (in.has_deadline()) {
    SCHED_ASSIGN_OR_RETURN(spec.deadline, CheckedTime(in.deadline(), "deadline"));
  }
  spec.max_cost = in.max_cost();
  SCHED_ASSIGN_OR_RETURN(spec.placement, PlacementPolicyFromProto(in.placement()));
  SCHED_ASSIGN_OR_RETURN(spec.spot, SpotPolicyFromProto(in.spot()));
  if (in.has_retry()) {
    const v1::RetryPolicy& rp = in.retry();
    constexpr int64_t kMaxSeconds = int64_t{366} * 24 * 3600;
    if (rp.backoff_seconds() < 0 || rp.backoff_seconds() > kMaxSeconds ||
        rp.max_backoff_seconds() < 0 || rp.max_backoff_seconds() > kMaxSeconds) {
      return absl::InvalidArgumentError(
          "retry.backoff: must be between 0 and a year, in seconds");
    }
    spec.retry.max_restarts = rp.max_restarts();
    spec.retry.exit_codes.assign(rp.exit_codes().begin(), rp.exit_codes().end());
    if (rp.backoff_seconds() > 0) spec.retry.backoff = absl::Seconds(rp.backoff_seconds());
    if (rp.max_backoff_seconds() > 0) {
      spec.retry.max_backoff = absl::Seconds(rp.max_backoff_seconds());
    }
  }
  if (in.max_duration_seconds() < 0 || in.max_duration_seconds() > int64_t{366} * 24 * 3600) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_duration: must be between 0 and a year, got ", in.max_duration_seconds(), " s"));
  }
  spec.max_duration = absl::Seconds(in.max_duration_seconds());
  if (in.has_not_before()) {
    SCHED_ASSIGN_OR_RETURN(spec.not_before, CheckedTime(in.not_before(), "not_before"));
  }
  for (const std::string& path : in.outputs()) spec.outputs.push_back(path);
  for (const v1::JobInput& input : in.inputs()) spec.inputs.emplace_back(input.name(), input.job_id());
  for (const v1::Dependency& d : in.after()) {
    spec.after.emplace_back(d.job_id(), d.when().empty() ? "success" : d.when());
  }
  if (in.has_sweep()) {
    const v1::Sweep& sw = in.sweep();
    for (const v1::SweepParameter& p : sw.parameters()) {
      spec.sweep.parameters.emplace_back(
          p.name(), std::vector<std::string>(p.values().begin(), p.values().end()));
    }
    for (const v1::SweepRun& run : sw.runs()) {
      spec.sweep.runs.emplace_back(run.values().begin(), run.values().end());
    }
    spec.sweep.max_parallel = sw.max_parallel();
    spec.sweep.metric = sw.metric();
    spec.sweep.maximize = sw.maximize();
    const v1::EarlyStopping& e = sw.early_stopping();
    spec.sweep.early_stopping = {e.rule(), e.min_step(), e.min_runs(), e.reduction_factor(),
                                 e.max_step()};
  }
  return spec;
}

void DecisionToProto(const Decision& d, v1::Decision* out) {
  TimeToProto(d.time, out->mutable_decide_time());
  out->set_placed(d.placed);
  out->set_summary(d.summary);
  for (const DecisionOption& o : d.options) {
    v1::DecisionOption* p = out->add_options();
    p->set_node(o.node);
    p->set_provider(o.provider);
    p->set_local(o.local);
    p->set_spot(o.spot);
    p->set_fits_now(o.fits_now);
    if (o.start != absl::InfiniteFuture() && o.start != absl::InfinitePast()) {
      TimeToProto(o.start, p->mutable_start_time());
    }
    if (o.finish != absl::InfiniteFuture() && o.finish != absl::InfinitePast()) {
      TimeToProto(o.finish, p->mutable_finish_time());
    }
    if (o.runtime < absl::InfiniteDuration())
      p->set_runtime_seconds(absl::ToDoubleSeconds(o.runtime));
    p->set_price_per_hour(o.price_per_hour);
    if (std::isfinite(o.cost)) p->set_cost(o.cost);
    p->set_deferred(o.deferred);
    p->set_cost_if_started_at_once(o.cost_at_earliest);
    p->set_rental(o.rental);
    p->set_verdict(std::string(OptionVerdictName(o.verdict)));
    p->set_reason(o.reason);
  }
  out->set_nodes_considered(d.nodes_considered);
  out->set_nodes_not_shown(d.nodes_not_shown);
  out->set_local_blocker(std::string(LocalBlockerName(d.local_blocker)));
}

absl::StatusOr<Decision> DecisionFromProto(const v1::Decision& in) {
  Decision d;
  SCHED_ASSIGN_OR_RETURN(d.time, CheckedTime(in.decide_time(), "decision.decide_time"));
  d.placed = in.placed();
  d.summary = in.summary();
  for (const v1::DecisionOption& p : in.options()) {
    DecisionOption& o = d.options.emplace_back();
    o.node = p.node();
    o.provider = p.provider();
    o.local = p.local();
    o.spot = p.spot();
    o.fits_now = p.fits_now();
    o.start = o.finish = absl::InfiniteFuture();
    if (p.has_start_time()) {
      SCHED_ASSIGN_OR_RETURN(o.start, CheckedTime(p.start_time(), "decision.options.start_time"));
    }
    if (p.has_finish_time()) {
      SCHED_ASSIGN_OR_RETURN(o.finish,
                             CheckedTime(p.finish_time(), "decision.options.finish_time"));
    }
    o.runtime = absl::Seconds(p.runtime_seconds());
    o.price_per_hour = p.price_per_hour();
    o.cost = p.cost();
    o.deferred = p.deferred();
    o.cost_at_earliest = p.cost_if_started_at_once();
    o.rental = p.rental();
    bool known = false;
    for (int v = 0; v <= static_cast<int>(kLastOptionVerdict) && !known; ++v) {
      if (OptionVerdictName(static_cast<OptionVerdict>(v)) == p.verdict()) {
        o.verdict = static_cast<OptionVerdict>(v);
        known = true;
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("decision.options.verdict: unknown \"", p.verdict(), "\""));
    }
    o.reason = p.reason();
  }
  d.nodes_considered = in.nodes_considered();
  d.nodes_not_shown = in.nodes_not_shown();
  bool known = in.local_blocker().empty();
  for (int b = 0; b <= static_cast<int>(kLastLocalBlocker) && !known; ++b) {
    if (LocalBlockerName(static_cast<LocalBlocker>(b)) == in.local_blocker()) {
      d.local_blocker = static_cast<LocalBlocker>(b);
      known = true;
    }
  }
  if (!known) {
    return absl::InvalidArgumentError(
        absl::StrCat("decision.local_blocker: unknown \"", in.local_blocker(), "\""));
  }
  return d;
}

void JobToProto(const Job& job, v1::Job* out) {
  out->set_id(job.id);
  JobSpecToProto(job.spec, out->mutable_spec());
  out->set_state(JobStateToProto(job.state));
  out->set_attempt(job.attempt);
  out->set_epoch(job.epoch);
  out->set_node(job.node);
  for (uint32_t g : job.gpu_indexes) out->add_gpu_indexes(g);
  if (job.create_time != absl::InfinitePast())
    TimeToProto(job.create_time, out->mutable_create_time());
  if (job.start_time != absl::InfinitePast())
    TimeToProto(job.start_time, out->mutable_start_time());
  if (job.finish_time != absl::InfinitePast())
    TimeToProto(job.finish_time, out->mutable_finish_time());
  if (job.update_time != absl::InfinitePast())
    TimeToProto(job.update_time, out->mutable_update_time());
  out->set_exit_code(job.exit_code);
  out->set_message(job.message);
  out->set_cancel_requested(job.cancel_requested);
  out->set_request_id(job.request_id);
  if (job.decision.time != absl::InfinitePast())
    DecisionToProto(job.decision, out->mutable_decision());
  for (const JobAttempt& a : job.attempts) {
    v1::JobAttempt* p = out->add_attempts();
    p->set_attempt(a.attempt);
    p->set_epoch(a.epoch);
    p->set_node(a.node);
    p->set_provider(a.provider);
    p->set_spot(a.spot);
    if (a.start != absl::InfinitePast()) TimeToProto(a.start, p->mutable_start_time());
    if (a.end != absl::InfinitePast()) TimeToProto(a.end, p->mutable_end_time());
    p->set_end_reason(a.end_reason);
    p->set_preempted(a.preempted);
    p->set_resumed_from(a.resumed_from);
    p->set_resumed_from_seq(a.resumed_from_seq);
  }
  out->set_preemptions(job.preemptions);
  out->set_restarts(job.restarts);
  // Held with no end (a sweep's slot, dependencies): no time; the message says what for.
  if (job.hold_until != absl::InfinitePast() && job.hold_until != absl::InfiniteFuture()) {
    TimeToProto(job.hold_until, out->mutable_hold_until());
  }
  out->set_run_seconds(absl::ToDoubleSeconds(job.run_time));
  out->set_spent(job.spent);
  out->set_stop_reason(job.stop_reason);
  out->set_stopped_early(job.stopped_early);
  out->set_sweep_id(job.sweep_id);
  out->set_array_index(job.array_index);
  out->mutable_parameters()->insert(job.parameters.begin(), job.parameters.end());
  out->set_waiting_for_slot(job.waiting_for_slot);
  out->set_yield_to(job.yield_to);
  out->mutable_metrics()->insert(job.metrics.begin(), job.metrics.end());
  out->set_metric_step(job.metric_step);
  for (const MetricSample& m : job.history) {
    v1::MetricPoint* p = out->add_history();
    p->set_step(m.step);
    p->set_name(job.spec.sweep.metric);
    p->set_value(m.value);
  }
}

absl::StatusOr<Job> JobFromProto(const v1::Job& in) {
  Job job;
  job.id = in.id();
  SCHED_ASSIGN_OR_RETURN(job.spec, JobSpecFromProto(in.spec()));
  SCHED_ASSIGN_OR_RETURN(job.state, JobStateFromProto(in.state()));
  job.attempt = in.attempt();
  job.epoch = in.epoch();
  job.node = in.node();
  job.gpu_indexes.assign(in.gpu_indexes().begin(), in.gpu_indexes().end());
  SCHED_ASSIGN_OR_RETURN(job.create_time, CheckedTime(in.create_time(), "create_time"));
  SCHED_ASSIGN_OR_RETURN(job.start_time, CheckedTime(in.start_time(), "start_time"));
  SCHED_ASSIGN_OR_RETURN(job.finish_time, CheckedTime(in.finish_time(), "finish_time"));
  SCHED_ASSIGN_OR_RETURN(job.update_time, CheckedTime(in.update_time(), "update_time"));
  job.exit_code = in.exit_code();
  job.message = in.message();
  job.cancel_requested = in.cancel_requested();
  job.request_id = in.request_id();
  if (in.has_decision()) {
    SCHED_ASSIGN_OR_RETURN(job.decision, DecisionFromProto(in.decision()));
  }
  for (const v1::JobAttempt& p : in.attempts()) {
    JobAttempt& a = job.attempts.emplace_back();
    a.attempt = p.attempt();
    a.epoch = p.epoch();
    a.node = p.node();
    a.provider = p.provider();
    a.spot = p.spot();
    SCHED_ASSIGN_OR_RETURN(a.start, CheckedTime(p.start_time(), "attempts.start_time"));
    SCHED_ASSIGN_OR_RETURN(a.end, CheckedTime(p.end_time(), "attempts.end_time"));
    a.end_reason = p.end_reason();
    a.preempted = p.preempted();
    a.resumed_from = p.resumed_from();
    a.resumed_from_seq = p.resumed_from_seq();
  }
  job.preemptions = in.preemptions();
  job.restarts = in.restarts();
  if (in.has_hold_until()) {
    SCHED_ASSIGN_OR_RETURN(job.hold_until, CheckedTime(in.hold_until(), "hold_until"));
  }
  if (!std::isfinite(in.run_seconds()) || in.run_seconds() < 0 || in.run_seconds() > 1e12 ||
      !std::isfinite(in.spent()) || in.spent() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("job ", in.id(), ": run_seconds and spent must be finite and >= 0"));
  }
  job.run_time = absl::Seconds(in.run_seconds());
  job.spent = in.spent();
  job.stop_reason = in.stop_reason();
  job.stopped_early = in.stopped_early();
  job.sweep_id = in.sweep_id();
  job.array_index = in.array_index();
  job.parameters.insert(in.parameters().begin(), in.parameters().end());
  job.waiting_for_slot = in.waiting_for_slot();
  job.yield_to = in.yield_to();
  job.metrics.insert(in.metrics().begin(), in.metrics().end());
  job.metric_step = in.metric_step();
  for (const v1::MetricPoint& p : in.history()) job.history.push_back({p.step(), p.value()});
  if (job.history.size() > Job::kMaxHistory) {
    return absl::InvalidArgumentError(
        absl::StrCat("job ", in.id(), ": more than ", Job::kMaxHistory, " history points"));
  }
  return job;
}

void PriceScheduleToProto(const cost::PriceSchedule& schedule, v1::PriceSchedule* out) {
  for (const cost::PriceWindow& w : schedule.windows) {
    v1::PriceWindow* pw = out->add_windows();
    pw->set_start_minute(static_cast<uint32_t>(w.start_minute));
    pw->set_end_minute(static_cast<uint32_t>(w.end_minute));
    pw->set_dollars_per_hour(w.usd_per_hour);
  }
  out->set_utc_offset_minutes(schedule.utc_offset_minutes);
}

absl::StatusOr<cost::PriceSchedule> PriceScheduleFromProto(const v1::PriceSchedule& in) {
  cost::PriceSchedule schedule;
  // Minutes past a day stay past it (and are refused below) rather than wrap to negative.
  const auto minute = [](uint32_t m) { return static_cast<int32_t>(std::min(m, 1u << 20)); };
  for (const v1::PriceWindow& w : in.windows()) {
    schedule.windows.push_back(
        {minute(w.start_minute()), minute(w.end_minute()), w.dollars_per_hour()});
  }
  schedule.utc_offset_minutes = in.utc_offset_minutes();
  SCHED_RETURN_IF_ERROR(cost::ValidatePriceSchedule(schedule));
  return schedule;
}

void CapabilitiesToProto(const NodeCapabilities& caps, v1::Capabilities* out) {
  out->set_cpus(caps.cpu_millis / 1000.0);
  out->set_memory_bytes(caps.memory_bytes);
  out->set_disk_bytes(caps.disk_bytes);
  for (const GpuDevice& g : caps.gpus) {
    v1::GpuInfo* gi = out->add_gpus();
    gi->set_index(g.index);
    gi->set_uuid(g.uuid);
    gi->set_model(g.model);
    gi->set_memory_bytes(g.memory_bytes);
  }
  out->set_provider(caps.provider);
  out->set_price_per_hour(caps.price_per_hour);
  out->set_spot(caps.spot);
  out->set_region(caps.region);
  out->set_instance_type(caps.instance_type);
  if (caps.local_price) {
    const LocalPrice& p = *caps.local_price;
    v1::Capabilities::LocalPrice* lp = out->mutable_local_price();
    lp->set_power_watts(p.power_watts);
    lp->set_electricity_dollars_per_kwh(p.electricity_dollars_per_kwh);
    lp->set_hardware_cost_dollars(p.hardware_cost_dollars);
    lp->set_amortize_months(p.amortize_months);
    lp->set_energy_dollars_per_hour(p.energy_dollars_per_hour);
    lp->set_amortization_dollars_per_hour(p.amortization_dollars_per_hour);
  }
  if (!caps.price_schedule.empty() || caps.price_schedule.utc_offset_minutes != 0) {
    PriceScheduleToProto(caps.price_schedule, out->mutable_price_schedule());
  }
  for (const std::string& field : caps.advertised) out->add_advertised(field);
  for (const auto& [k, v] : caps.labels) (*out->mutable_labels())[k] = v;
  out->set_hostname(caps.hostname);
  out->set_gpu_detection(caps.gpu_detection);
  out->set_agent_version(caps.agent_version);
}

absl::StatusOr<NodeCapabilities> CapabilitiesFromProto(const v1::Capabilities& in) {
  if (!std::isfinite(in.cpus()) || in.cpus() < 0 || in.cpus() > 1e6) {
    return absl::InvalidArgumentError(absl::StrCat("capabilities.cpus: got ", in.cpus()));
  }
  if (in.memory_bytes() < 0 || in.disk_bytes() < 0) {
    return absl::InvalidArgumentError("capabilities: memory and disk must be >= 0");
  }
  if (!std::isfinite(in.price_per_hour()) || in.price_per_hour() < 0 ||
      in.price_per_hour() > cost::kMaxUsdPerHour) {
    return absl::InvalidArgumentError(absl::StrCat("capabilities.price_per_hour: must be in [0, ",
                                                   cost::kMaxUsdPerHour, "], got ",
                                                   in.price_per_hour()));
  }
  if (in.has_local_price()) {
    const v1::Capabilities::LocalPrice& p = in.local_price();
    for (double part :
         {p.power_watts(), p.electricity_dollars_per_kwh(), p.hardware_cost_dollars(),
          p.amortize_months(), p.energy_dollars_per_hour(), p.amortization_dollars_per_hour()}) {
      if (!std::isfinite(part) || part < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("capabilities.local_price: every part must be >= 0, got ", part));
      }
    }
  }
  NodeCapabilities caps;
  caps.cpu_millis = static_cast<int64_t>(std::llround(in.cpus() * 1000));
  caps.memory_bytes = in.memory_bytes();
  caps.disk_bytes = in.disk_bytes();
  for (const v1::GpuInfo& g : in.gpus()) {
    caps.gpus.push_back(GpuDevice{g.index(), g.uuid(), g.model(), g.memory_bytes()});
  }
  caps.provider = in.provider();
  caps.price_per_hour = in.price_per_hour();
  caps.spot = in.spot();
  caps.region = in.region();
  caps.instance_type = in.instance_type();
  if (in.has_local_price()) {
    const v1::Capabilities::LocalPrice& p = in.local_price();
    caps.local_price = LocalPrice{
        p.power_watts(),     p.electricity_dollars_per_kwh(), p.hardware_cost_dollars(),
        p.amortize_months(), p.energy_dollars_per_hour(),     p.amortization_dollars_per_hour()};
  }
  absl::StatusOr<cost::PriceSchedule> schedule = PriceScheduleFromProto(in.price_schedule());
  if (!schedule.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("capabilities.price_schedule: ", schedule.status().message()));
  }
  caps.price_schedule = *std::move(schedule);
  caps.advertised.assign(in.advertised().begin(), in.advertised().end());
  caps.labels.insert(in.labels().begin(), in.labels().end());
  caps.hostname = in.hostname();
  caps.gpu_detection = in.gpu_detection();
  caps.agent_version = in.agent_version();
  return caps;
}

void NodeToProto(const Node& node, v1::Node* out) {
  out->set_name(node.record.name);
  switch (node.state()) {
    case NodeState::kReady:
      out->set_state(v1::NODE_STATE_READY);
      break;
    case NodeState::kCordoned:
      out->set_state(v1::NODE_STATE_CORDONED);
      break;
    case NodeState::kDraining:
      out->set_state(v1::NODE_STATE_DRAINING);
      break;
    case NodeState::kPreempting:
      out->set_state(v1::NODE_STATE_PREEMPTING);
      break;
    case NodeState::kDown:
      out->set_state(v1::NODE_STATE_DOWN);
      break;
    case NodeState::kProvisioning:
      out->set_state(v1::NODE_STATE_PROVISIONING);
      break;
    case NodeState::kJoining:
      out->set_state(v1::NODE_STATE_JOINING);
      break;
    case NodeState::kTerminating:
      out->set_state(v1::NODE_STATE_TERMINATING);
      break;
    case NodeState::kGone:
      out->set_state(v1::NODE_STATE_GONE);
      break;
  }
  CapabilitiesToProto(node.record.caps, out->mutable_capabilities());
  out->set_allocated_cpus(node.alloc_cpu_millis / 1000.0);
  out->set_allocated_memory_bytes(node.alloc_memory_bytes);
  for (uint32_t g : node.busy_gpus) {
    if (!node.owner_gpus.count(g)) out->add_allocated_gpu_indexes(g);
  }
  for (uint32_t g : node.owner_gpus) out->add_owner_gpu_indexes(g);
  out->set_owner_detail(node.owner_detail);
  out->set_running_jobs(node.running_jobs);
  if (node.last_heartbeat != absl::InfinitePast())
    TimeToProto(node.last_heartbeat, out->mutable_last_heartbeat_time());
  if (node.record.register_time != absl::InfinitePast())
    TimeToProto(node.record.register_time, out->mutable_register_time());
  out->set_connected(node.connected);
  if (node.record.rental) RentalToProto(*node.record.rental, node.cost_so_far, out->mutable_rental());
}

v1::RentalPhase RentalPhaseToProto(RentalPhase p) {
  switch (p) {
    case RentalPhase::kProvisioning: return v1::RENTAL_PHASE_PROVISIONING;
    case RentalPhase::kJoining: return v1::RENTAL_PHASE_JOINING;
    case RentalPhase::kReady: return v1::RENTAL_PHASE_READY;
    case RentalPhase::kDraining: return v1::RENTAL_PHASE_DRAINING;
    case RentalPhase::kTerminating: return v1::RENTAL_PHASE_TERMINATING;
    case RentalPhase::kGone: return v1::RENTAL_PHASE_GONE;
  }
  return v1::RENTAL_PHASE_UNSPECIFIED;
}

absl::StatusOr<RentalPhase> RentalPhaseFromProto(v1::RentalPhase p) {
  switch (p) {
    case v1::RENTAL_PHASE_PROVISIONING: return RentalPhase::kProvisioning;
    case v1::RENTAL_PHASE_JOINING: return RentalPhase::kJoining;
    case v1::RENTAL_PHASE_READY: return RentalPhase::kReady;
    case v1::RENTAL_PHASE_DRAINING: return RentalPhase::kDraining;
    case v1::RENTAL_PHASE_TERMINATING: return RentalPhase::kTerminating;
    case v1::RENTAL_PHASE_GONE: return RentalPhase::kGone;
    default: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("rental phase: unknown value ", static_cast<int>(p)));
}

namespace {
// Sets the timestamp `field` of `msg` when `t` is known (InfinitePast: left unset, since asking
// for the mutable field would set it).
#define SCHED_SET_TIME_IF_KNOWN(t, msg, field)              \
  do {                                                      \
    if ((t) != absl::InfinitePast()) TimeToProto((t), (msg)->mutable_##field()); \
  } while (false)
absl::Time TimeFromProtoIfSet(bool has, const google::protobuf::Timestamp& ts) {
  return has ? TimeFromProto(ts) : absl::InfinitePast();
}
}  // namespace

void RentalToProto(const Rental& r, double cost_so_far, v1::Rental* out) {
  out->set_provider(r.provider);
  out->set_offer_id(r.offer_id);
  out->set_instance_id(r.instance_id);
  out->set_owner_project(r.owner_project);
  out->set_phase(RentalPhaseToProto(r.phase));
  SCHED_SET_TIME_IF_KNOWN(r.create_time, out, create_time);
  SCHED_SET_TIME_IF_KNOWN(r.expected_ready, out, expected_ready_time);
  SCHED_SET_TIME_IF_KNOWN(r.ready_time, out, ready_time);
  SCHED_SET_TIME_IF_KNOWN(r.end_time, out, end_time);
  out->set_price_per_hour(r.price_per_hour);
  out->set_message(r.message);
  for (const RentalEvent& e : r.events) {
    v1::RentalEvent* pe = out->add_events();
    SCHED_SET_TIME_IF_KNOWN(e.time, pe, time);
    pe->set_phase(RentalPhaseToProto(e.phase));
    pe->set_message(e.message);
  }
  out->set_cost_so_far(cost_so_far);
  SCHED_SET_TIME_IF_KNOWN(r.unleased_since, out, idle_since);
}
#undef SCHED_SET_TIME_IF_KNOWN

absl::StatusOr<Rental> RentalFromProto(const v1::Rental& in) {
  Rental r;
  r.provider = in.provider();
  r.offer_id = in.offer_id();
  r.instance_id = in.instance_id();
  r.owner_project = in.owner_project();
  SCHED_ASSIGN_OR_RETURN(r.phase, RentalPhaseFromProto(in.phase()));
  r.create_time = TimeFromProtoIfSet(in.has_create_time(), in.create_time());
  r.expected_ready = TimeFromProtoIfSet(in.has_expected_ready_time(), in.expected_ready_time());
  r.ready_time = TimeFromProtoIfSet(in.has_ready_time(), in.ready_time());
  r.end_time = TimeFromProtoIfSet(in.has_end_time(), in.end_time());
  if (!std::isfinite(in.price_per_hour()) || in.price_per_hour() < 0) {
    return absl::InvalidArgumentError("rental price_per_hour: must be a finite number >= 0");
  }
  r.price_per_hour = in.price_per_hour();
  r.message = in.message();
  for (const v1::RentalEvent& pe : in.events()) {
    RentalEvent e;
    e.time = TimeFromProtoIfSet(pe.has_time(), pe.time());
    SCHED_ASSIGN_OR_RETURN(e.phase, RentalPhaseFromProto(pe.phase()));
    e.message = pe.message();
    r.events.push_back(std::move(e));
  }
  return r;
}

v1::LogStream LogStreamToProto(LogStreamKind s) {
  return s == LogStreamKind::kStderr ? v1::LOG_STREAM_STDERR : v1::LOG_STREAM_STDOUT;
}

LogStreamKind LogStreamFromProto(v1::LogStream s) {
  return s == v1::LOG_STREAM_STDERR ? LogStreamKind::kStderr : LogStreamKind::kStdout;
}

void NodeRecordToStored(const NodeRecord& record, v1::StoredNode* out) {
  out->set_name(record.name);
  CapabilitiesToProto(record.caps, out->mutable_capabilities());
  out->set_cordoned(record.cordoned);
  out->set_draining(record.draining);
  if (record.register_time != absl::InfinitePast()) {
    out->set_register_time_unix_ms(absl::ToUnixMillis(record.register_time));
  }
  if (record.rental) {
    const Rental& r = *record.rental;
    RentalToProto(r, 0, out->mutable_rental());
    out->mutable_rental()->clear_cost_so_far();
    out->mutable_rental()->clear_idle_since();
    if (r.unleased_since != absl::InfinitePast()) {
      out->set_rental_unleased_since_unix_ms(absl::ToUnixMillis(r.unleased_since));
    }
    out->set_rental_ledger_seq(r.ledger_seq);
    out->set_rental_closed_cost(r.closed_cost);
  }
}

absl::StatusOr<NodeRecord> NodeRecordFromStored(const v1::StoredNode& stored) {
  NodeRecord record;
  record.name = stored.name();
  SCHED_ASSIGN_OR_RETURN(record.caps, CapabilitiesFromProto(stored.capabilities()));
  record.cordoned = stored.cordoned();
  record.draining = stored.draining();
  if (stored.register_time_unix_ms() != 0) {
    record.register_time = absl::FromUnixMillis(stored.register_time_unix_ms());
  }
  if (stored.has_rental()) {
    SCHED_ASSIGN_OR_RETURN(Rental r, RentalFromProto(stored.rental()));
    if (stored.rental_unleased_since_unix_ms() != 0) {
      r.unleased_since = absl::FromUnixMillis(stored.rental_unleased_since_unix_ms());
    }
    r.ledger_seq = stored.rental_ledger_seq();
    if (!std::isfinite(stored.rental_closed_cost())) {
      return absl::InvalidArgumentError("rental closed cost: must be finite");
    }
    r.closed_cost = stored.rental_closed_cost();
    record.rental = std::move(r);
  }
  return record;
}

}  // namespace sched
