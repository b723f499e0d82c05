#pragma once

#include "sched/v1/agent_service.grpc.pb.h"
#include "server/core/scheduler.h"

namespace sched {

// sched.v1.AgentService: one bidirectional Connect stream per agent, opened by the agent.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  explicit AgentServiceImpl(Scheduler* scheduler) : scheduler_(scheduler) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ServerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  Scheduler* const scheduler_;
};

}  // namespace sched
