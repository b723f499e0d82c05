#pragma once

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/core/agent_link.h"

namespace sched::testing {

// Records what the scheduler told one agent.
class FakeAgentLink final : public AgentLink {
 public:
  struct Command {
    std::string kind;  // "assign", "cancel", "stop", "drain"
    std::string job_id;
    uint64_t epoch = 0;
    std::vector<uint32_t> gpus;
    std::string reason;
  };

  void Assign(const Job& job) override { Add({"assign", job.id, job.epoch, job.gpu_indexes, ""}); }
  void Cancel(const std::string& id, uint64_t epoch) override { Add({"cancel", id, epoch, {}, ""}); }
  void Stop(const std::string& id, uint64_t epoch, const std::string& reason) override {
    Add({"stop", id, epoch, {}, reason});
  }
  void Drain() override { Add({"drain", "", 0, {}, ""}); }

  std::vector<Command> Take() {
    absl::MutexLock lock(&mu_);
    return std::move(commands_);
  }

 private:
  void Add(Command c) {
    absl::MutexLock lock(&mu_);
    commands_.push_back(std::move(c));
  }
  absl::Mutex mu_;
  std::vector<Command> commands_;
};

}  // namespace sched::testing
