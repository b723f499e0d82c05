#pragma once

// What the autoscaler and the Scheduler say to each other about rented capacity: offers a
// provider would rent out, what pending work needs rented, and changes to a rental's life.
// Plain data.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/core/node.h"

namespace sched {

// A node a provider would rent out now, as the cost brain weighs it.
struct Offer {
  std::string provider;  // the provider's name in the autoscale config
  std::string id;        // the provider's id of the offer
  // What the node would report once its agent joins: GPUs, CPUs, memory, price, spot, region,
  // instance type, and the provider it advertises.
  NodeCapabilities caps;
  // Expected from the create request to its agent joining.
  absl::Duration provisioning_time = absl::Minutes(5);
  // Why no node of it is rented now though jobs may choose it (a fleet or provider cap); said
  // in the messages of the jobs that wait for it. Empty: it may be rented.
  std::string blocked;
};

struct RentalOptions {
  // A rented node left idle this long is given back. Paid for after the job's run, so counted in
  // what a new node costs the job (with the provisioning time).
  absl::Duration idle_tail = absl::Minutes(10);
  // Pending jobs weighed against the offers per plan, in queue order.
  size_t max_jobs = 1000;
};

// What pending work needs rented.
struct RentalPlan {
  struct NewNode {
    size_t offer = 0;                  // index into the offers
    std::vector<std::string> job_ids;  // the jobs it is for, in queue order
    std::string project;               // the first job's: it pays the node's time without jobs
    double cost = 0;                   // the first job's expected cost there
  };
  std::vector<NewNode> new_nodes;
  // Rented nodes whose agents have not joined yet, each with the jobs that wait for it; an
  // active rental missing here has none.
  std::map<std::string, std::vector<std::string>> waited_for;
  size_t jobs_weighed = 0;
};

struct RentalUpdate {
  std::optional<RentalPhase> phase;  // kReady comes with the agent; not set here
  std::optional<std::string> instance_id;
  std::optional<std::string> message;
  // With kTerminating: refused (FAILED_PRECONDITION) when a job holds the node, so that giving
  // back an idle node cannot race a placement.
  bool only_if_unused = false;
};

}  // namespace sched
