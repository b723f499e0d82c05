#pragma once

#include "sched/v1/cost_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"

namespace sched {

// CostService: budgets and cost reports over the Scheduler's ledger.
class CostServiceImpl final : public v1::CostService::CallbackService {
 public:
  CostServiceImpl(Scheduler* scheduler, auth::Authorizer* auth)
      : scheduler_(scheduler), auth_(auth) {}

  grpc::ServerUnaryReactor* SetBudget(grpc::CallbackServerContext* ctx,
                                      const v1::SetBudgetRequest* req, v1::Budget* resp) override;
  grpc::ServerUnaryReactor* GetBudget(grpc::CallbackServerContext* ctx,
                                      const v1::GetBudgetRequest* req, v1::Budget* resp) override;
  grpc::ServerUnaryReactor* ListBudgets(grpc::CallbackServerContext* ctx,
                                        const v1::ListBudgetsRequest* req,
                                        v1::ListBudgetsResponse* resp) override;
  grpc::ServerUnaryReactor* GetCostReport(grpc::CallbackServerContext* ctx,
                                          const v1::GetCostReportRequest* req,
                                          v1::CostReport* resp) override;
  grpc::ServerUnaryReactor* GetCostAdvice(grpc::CallbackServerContext* ctx,
                                          const v1::GetCostAdviceRequest* req,
                                          v1::CostAdvice* resp) override;

 private:
  void BudgetToProto(const Budget& budget, v1::Budget* out) const;
  absl::Status CostAdvice(const v1::GetCostAdviceRequest& req, v1::CostAdvice* resp) const;

  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
};

}  // namespace sched
