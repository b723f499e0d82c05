#include "server/service/cost_service.h"

#include "server/convert/convert.h"
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
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  Budget budget;
  budget.project = req->project();
  budget.monthly_limit = req->monthly_limit();
  if (req->alert_percents_size() > 0) {
    budget.alert_percents.assign(req->alert_percents().begin(), req->alert_percents().end());
  }
  budget.hard_cap = !req->soft();
  scheduler_->SetBudget(std::move(budget), [this, reactor, resp](absl::StatusOr<Budget> b) {
    if (b.ok()) BudgetToProto(*b, resp);
    reactor->Finish(ToGrpcStatus(b.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::GetBudget(grpc::CallbackServerContext* ctx,
                                                     const v1::GetBudgetRequest* req,
                                                     v1::Budget* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Budget> b = scheduler_->GetBudget(req->project());
  if (b.ok()) BudgetToProto(*b, resp);
  reactor->Finish(ToGrpcStatus(b.status()));
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::ListBudgets(grpc::CallbackServerContext* ctx,
                                                       const v1::ListBudgetsRequest* req,
                                                       v1::ListBudgetsResponse* resp) {
  for (const Budget& b : scheduler_->ListBudgets()) BudgetToProto(b, resp->add_budgets());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* CostServiceImpl::GetCostReport(grpc::CallbackServerContext* ctx,
                                                         const v1::GetCostReportRequest* req,
                                                         v1::CostReport* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<CostGroup> group = CostGroupFromProto(req->group_by());
  if (!group.ok()) {
    reactor->Finish(ToGrpcStatus(group.status()));
    return reactor;
  }
  const absl::Time since =
      req->has_since() ? TimeFromProto(req->since()) : absl::InfinitePast();
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

}  // namespace sched
