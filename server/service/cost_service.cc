#include "server/service/cost_service.h"

#include <cmath>

#include "server/common/status_macros.h"
#include "server/convert/convert.h"
#include "server/cost/advise.h"
#include "server/service/cost_advice.h"
#include "server/service/status.h"

namespace sched {
namespace {

absl::StatusOr<CostGroup> CostGroupFromProto(v1::CostGroup g) {
  switch (g) {
    case v1::COST_GROUP_UNSPECIFIED:
    case v1::COST_GROUP_PROJECT:
      return CostGroup::kProject;
    case v1::COST_GROUP_PROVIDER:
      return CostGroup::kProvider;
    case v1::COST_GROUP_JOB:
      return CostGroup::kJob;
    case v1::COST_GROUP_NODE:
      return CostGroup::kNode;
    default:
      return absl::InvalidArgumentError(absl::StrCat("group_by: unknown grouping ", g));
  }
}

void UpgradeToProto(const cost::UpgradePath& p, v1::UpgradeAdvice* out) {
  out->set_kind(std::string(cost::UpgradeKindName(p.kind)));
  out->set_description(p.description);
  out->set_gpu_model(p.gpu_model);
  out->set_gpus(p.gpu_count);
  out->set_gpu_memory_bytes(p.gpu_memory_bytes);
  out->set_memory_bytes(p.memory_bytes);
  out->set_price(p.price_usd);
  for (const std::string& id : p.job_ids) out->add_job_ids(id);
  out->set_runs(p.runs);
  out->set_cloud_dollars(p.cloud_usd);
  out->set_local_dollars(p.local_usd);
  out->set_runs_not_scaled(p.runs_not_scaled);
  out->set_saved_dollars(p.saving_usd);
  out->set_saved_per_month(p.saving_usd_per_month);
  out->set_pays_back(std::isfinite(p.payback_months));
  out->set_payback_months(std::isfinite(p.payback_months) ? p.payback_months : 0);
}

}  // namespace

void CostServiceImpl::BudgetToProto(const Budget& budget, v1::Budget* out) const {
  out->set_project(budget.project);
  out->set_monthly_limit(budget.monthly_limit);
  for (int p : budget.alert_percents) out->add_alert_percents(p);
  out->set_hard_cap(budget.hard_cap);
  TimeToProto(budget.update_time, out->mutable_update_time());
  out->set_spent_this_month(scheduler_->SpentThisMonth(budget.project));
}

grpc::ServerUnaryReactor* CostServiceImpl::SetBudget(grpc::CallbackServerContext* ctx,
                                                     const v1::SetBudgetRequest* req,
                                                     v1::Budget* resp) {
  absl::StatusOr<auth::Caller> caller = auth_->Check(*ctx, auth::Action::kOperate);
  if (!caller.ok()) return FinishUnary(ctx, caller.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Budget budget;
  budget.project = req->project();
  budget.monthly_limit = req->monthly_limit();
  if (req->alert_percents_size() > 0) {
    budget.alert_percents.assign(req->alert_percents().begin(), req->alert_percents().end());
  }
  budget.hard_cap = !req->soft();
  scheduler_->SetBudget(std::move(budget),
                        [this, ctx, reactor, resp, caller = *caller, project = req->project(),
                         limit = req->monthly_limit()](absl::StatusOr<Budget> b) {
                          if (b.ok()) BudgetToProto(*b, resp);
                          auth_->Audit(*ctx, caller, absl::StrCat("budget_set ", limit),
                                       absl::StrCat("project ", project), project, b.status());
                          reactor->Finish(ToGrpcStatus(b.status()));
                        });
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::GetBudget(grpc::CallbackServerContext* ctx,
                                                     const v1::GetBudgetRequest* req,
                                                     v1::Budget* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Budget> b = scheduler_->GetBudget(req->project());
  if (b.ok()) BudgetToProto(*b, resp);
  reactor->Finish(ToGrpcStatus(b.status()));
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::ListBudgets(grpc::CallbackServerContext* ctx,
                                                       const v1::ListBudgetsRequest* req,
                                                       v1::ListBudgetsResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  for (const Budget& b : scheduler_->ListBudgets()) BudgetToProto(b, resp->add_budgets());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::GetCostReport(grpc::CallbackServerContext* ctx,
                                                         const v1::GetCostReportRequest* req,
                                                         v1::CostReport* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<CostGroup> group = CostGroupFromProto(req->group_by());
  if (!group.ok()) {
    reactor->Finish(ToGrpcStatus(group.status()));
    return reactor;
  }
  const absl::Time since = req->has_since() ? TimeFromProto(req->since()) : absl::InfinitePast();
  CostReport report = scheduler_->Costs(since, *group, req->project());
  TimeToProto(report.since, resp->mutable_since());
  TimeToProto(report.until, resp->mutable_until());
  for (const CostLine& line : report.lines) {
    v1::CostLine* out = resp->add_lines();
    out->set_key(line.key);
    out->set_dollars(line.dollars);
    out->set_hours(line.hours);
    out->set_leases(line.leases);
  }
  resp->set_total_dollars(report.total_dollars);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

absl::Status CostServiceImpl::CostAdvice(const v1::GetCostAdviceRequest& req,
                                         v1::CostAdvice* resp) const {
  const std::shared_ptr<const cost::Catalog>& catalog = scheduler_->options().catalog;
  if (catalog == nullptr) {
    return absl::FailedPreconditionError(
        "no catalog loaded: upgrade advice needs GPU and RAM prices (start schedd with "
        "--catalog)");
  }
  const std::vector<Node> nodes = scheduler_->ListNodes();
  SCHED_ASSIGN_OR_RETURN(const Node* machine, PickLocalNode(nodes, req.node()));
  const uint32_t days = req.days() == 0 ? 30 : req.days();
  // The Scheduler's clock, as a cost report over an empty window gives it.
  const absl::Time until =
      scheduler_->Costs(absl::InfiniteFuture(), CostGroup::kProvider, "").until;
  const absl::Time since = until - absl::Hours(24) * days;
  const std::vector<LedgerEntry> ledger = scheduler_->Ledger(since);
  absl::flat_hash_map<std::string, Job> jobs;
  for (const LedgerEntry& e : ledger) {
    if (jobs.contains(e.job_id)) continue;
    absl::StatusOr<Job> job = scheduler_->GetJob(e.job_id);
    if (job.ok()) jobs.emplace(e.job_id, *std::move(job));
  }
  AdviceWindow window = GatherAdviceInput(ledger, jobs, nodes, *machine, since, until);
  cost::AdviseOptions options;
  options.keep_dominated = req.all();
  SCHED_ASSIGN_OR_RETURN(cost::Advice advice,
                         cost::AdviseUpgrades(*catalog, window.input, options));

  TimeToProto(since, resp->mutable_since());
  TimeToProto(until, resp->mutable_until());
  resp->set_days(days);
  const cost::LocalMachine& m = window.input.machine;
  resp->set_node(m.name);
  resp->set_gpu_model(m.gpu_model);
  resp->set_gpus(m.gpu_count);
  resp->set_gpu_memory_bytes(m.gpu_memory_bytes);
  resp->set_memory_bytes(m.memory_bytes);
  resp->set_cloud_dollars(window.cloud_usd);
  resp->set_too_small_dollars(advice.too_small_usd);
  resp->set_too_small_runs(advice.too_small_runs);
  resp->set_fits_now_dollars(advice.fits_now_usd);
  resp->set_fits_now_runs(advice.fits_now_runs);
  resp->set_no_upgrade_dollars(advice.no_path_usd);
  resp->set_no_upgrade_runs(advice.no_path_runs);
  for (const cost::UpgradePath& p : advice.paths) UpgradeToProto(p, resp->add_upgrades());
  resp->set_upgrades_not_shown(advice.dominated_paths);
  resp->set_catalog_as_of(catalog->as_of());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* CostServiceImpl::GetCostAdvice(grpc::CallbackServerContext* ctx,
                                                         const v1::GetCostAdviceRequest* req,
                                                         v1::CostAdvice* resp) {
  if (absl::Status s = auth_->Check(*ctx, auth::Action::kRead).status(); !s.ok()) {
    return FinishUnary(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(CostAdvice(*req, resp)));
  return reactor;
}

}  // namespace sched
