#pragma once

#include "sched/v1/agent_service.grpc.pb.h"
#include "server/auth/auth.h"
#include "server/core/scheduler.h"

namespace sched {

// sched.v1.AgentService: one bidirectional Connect stream per agent, opened by the agent.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Scheduler* scheduler, auth::Authorizer* auth)
      : scheduler_(scheduler), auth_(auth) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  Scheduler* const scheduler_;
  auth::Authorizer* const auth_;
};

}  // namespace sched
