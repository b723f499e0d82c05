#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "sched/v1/checkpoint_service.pb.h"
#include "sched/v1/types.pb.h"

// Jobs, nodes and checkpoints with every field the CLI prints set, for the client tests.
namespace sched::client::testing {

inline const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);  // 2023-11-14T22:13:20Z
inline constexpr int64_t kGiB = int64_t{1} << 30;

inline google::protobuf::Timestamp At(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

// RUNNING on ws1, created 5m30s before kNow.
inline sched::v1::Job RunningJob() {
  sched::v1::Job job;
  job.set_id("0123456789abcdef");
  sched::v1::JobSpec& spec = *job.mutable_spec();
  spec.set_name("train");
  spec.set_project("llm");
  spec.set_setup("pip install -r requirements.txt");
  spec.set_run("python train.py\n");
  sched::v1::EnvVar* env = spec.add_env();
  env->set_name("EPOCHS");
  env->set_value("3");
  spec.mutable_resources()->set_gpus(1);
  spec.mutable_resources()->set_gpu_memory_bytes(24'000'000'000);
  spec.mutable_resources()->add_gpu_models("H100");
  spec.mutable_resources()->add_gpu_models("A100");
  spec.mutable_resources()->set_cpus(2);
  spec.mutable_resources()->set_memory_bytes(8'000'000'000);
  spec.set_priority(10);
  (*spec.mutable_labels())["team"] = "nlp";
  job.set_state(sched::v1::JOB_STATE_RUNNING);
  job.set_attempt(1);
  job.set_epoch(7);
  job.set_node("ws1");
  job.add_gpu_indexes(0);
  *job.mutable_create_time() = At(kNow - absl::Seconds(330));
  *job.mutable_start_time() = At(kNow - absl::Seconds(300));
  *job.mutable_update_time() = At(kNow - absl::Seconds(10));
  job.set_request_id("req-1");
  return job;
}

// FAILED with exit code 2 on its second attempt, no name, created 2h before kNow.
inline sched::v1::Job FailedJob() {
  sched::v1::Job job;
  job.set_id("fedcba9876543210");
  job.mutable_spec()->set_project("default");
  job.mutable_spec()->set_run("exit 2");
  job.set_state(sched::v1::JOB_STATE_FAILED);
  job.set_attempt(2);
  job.set_epoch(3);
  job.set_exit_code(2);
  job.set_message("exit code 2");
  *job.mutable_create_time() = At(kNow - absl::Hours(2));
  return job;
}

inline sched::v1::GpuInfo Gpu(uint32_t index, const char* model, int64_t memory_bytes) {
  sched::v1::GpuInfo gpu;
  gpu.set_index(index);
  gpu.set_uuid("GPU-" + std::to_string(index));
  gpu.set_model(model);
  gpu.set_memory_bytes(memory_bytes);
  return gpu;
}

// A rented box: 2 H100s at $0.40/h, one job on GPU 0.
inline sched::v1::Node CloudNode() {
  sched::v1::Node node;
  node.set_name("vast-1");
  node.set_state(sched::v1::NODE_STATE_READY);
  node.set_connected(true);
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_cpus(16);
  caps.set_memory_bytes(64 * kGiB);
  caps.set_disk_bytes(1'000'000'000'000);
  *caps.add_gpus() = Gpu(0, "NVIDIA H100 80GB HBM3", int64_t{81559} << 20);
  *caps.add_gpus() = Gpu(1, "NVIDIA H100 80GB HBM3", int64_t{81559} << 20);
  caps.set_provider("vastai");
  caps.set_price_per_hour(0.4);
  caps.set_hostname("c-123");
  caps.set_gpu_detection("nvml");
  caps.set_agent_version("0.1.0");
  (*caps.mutable_labels())["region"] = "eu";
  node.set_allocated_cpus(2);
  node.set_allocated_memory_bytes(8'000'000'000);
  node.add_allocated_gpu_indexes(0);
  node.set_running_jobs(1);
  *node.mutable_last_heartbeat_time() = At(kNow - absl::Seconds(3));
  *node.mutable_register_time() = At(kNow - absl::Hours(2));
  return node;
}

// A node the autoscaler rented five minutes ago, up but its agent not joined yet.
inline sched::v1::Node RentedNode() {
  sched::v1::Node node;
  node.set_name("runpod-1a2b3c");
  node.set_state(sched::v1::NODE_STATE_JOINING);
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_cpus(16);
  caps.set_memory_bytes(128 * kGiB);
  *caps.add_gpus() = Gpu(0, "NVIDIA H100 80GB HBM3", int64_t{81559} << 20);
  caps.set_provider("runpod");
  caps.set_price_per_hour(2.5);
  sched::v1::Rental& r = *node.mutable_rental();
  r.set_provider("runpod");
  r.set_offer_id("h100-secure");
  r.set_instance_id("pod-xyz");
  r.set_owner_project("llm");
  r.set_phase(sched::v1::RENTAL_PHASE_JOINING);
  *r.mutable_create_time() = At(kNow - absl::Minutes(5));
  *r.mutable_expected_ready_time() = At(kNow - absl::Minutes(1));
  r.set_price_per_hour(2.5);
  r.set_message("the machine is up; waiting for its agent");
  r.set_cost_so_far(0.2083);
  *r.mutable_idle_since() = At(kNow - absl::Minutes(5));
  sched::v1::RentalEvent* e = r.add_events();
  *e->mutable_time() = At(kNow - absl::Minutes(5));
  e->set_phase(sched::v1::RENTAL_PHASE_PROVISIONING);
  e->set_message("asked of runpod (offer h100-secure, $2.50/h) for job 3f2a");
  e = r.add_events();
  *e->mutable_time() = At(kNow - absl::Minutes(2));
  e->set_phase(sched::v1::RENTAL_PHASE_JOINING);
  e->set_message("the machine is up; waiting for its agent");
  return node;
}

// The owner's workstation, cordoned: one RTX 3080, no price.
inline sched::v1::Node LocalNode() {
  sched::v1::Node node;
  node.set_name("ws1");
  node.set_state(sched::v1::NODE_STATE_CORDONED);
  node.set_connected(true);
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_cpus(8);
  caps.set_memory_bytes(32 * kGiB);
  *caps.add_gpus() = Gpu(0, "NVIDIA GeForce RTX 3080", 10 * kGiB);
  caps.set_provider("local");
  *node.mutable_register_time() = At(kNow - absl::Hours(53));
  return node;
}

// A GPU-less test box advertising 2 RTX 4090s as a Vast.ai spot node at $0.40/h.
inline sched::v1::Node AdvertisedNode() {
  sched::v1::Node node;
  node.set_name("demo");
  node.set_state(sched::v1::NODE_STATE_READY);
  node.set_connected(true);
  sched::v1::Capabilities& caps = *node.mutable_capabilities();
  caps.set_cpus(2);
  caps.set_memory_bytes(8 * kGiB);
  for (uint32_t i = 0; i < 2; ++i) {
    *caps.add_gpus() = Gpu(i, "NVIDIA GeForce RTX 4090", 24 * kGiB);
    caps.mutable_gpus(i)->clear_uuid();
  }
  caps.set_gpu_detection("advertised");
  caps.set_provider("vastai");
  caps.set_price_per_hour(0.4);
  caps.set_spot(true);
  caps.set_region("us-east");
  caps.set_instance_type("2x4090");
  caps.add_advertised("gpus");
  caps.add_advertised("provider");
  *node.mutable_register_time() = At(kNow - absl::Minutes(5));
  return node;
}

// A checkpoint of job abc1234500000000 as schedd lists it: `files` files of `size_bytes` in all
// (the first holding them all), committed `age` before kNow.
inline sched::v1::Checkpoint SampleCheckpoint(uint64_t seq, const char* name, uint32_t attempt,
                                              const char* node, uint64_t size_bytes, int files,
                                              absl::Duration age) {
  sched::v1::Checkpoint c;
  c.set_job_id("abc1234500000000");
  c.set_seq(seq);
  c.set_name(name);
  c.set_attempt(attempt);
  c.set_epoch(attempt + 4);
  c.set_node(node);
  *c.mutable_create_time() = At(kNow - age);
  c.set_size_bytes(size_bytes);
  c.set_is_dir(true);
  for (int i = 0; i < files; ++i) {
    sched::v1::CheckpointFile& f = *c.add_files();
    f.set_path(i == 0 ? "model.pt" : "extra-" + std::to_string(i) + ".json");
    f.set_size_bytes(i == 0 ? size_bytes : 0);
    f.set_mode(0644);
  }
  return c;
}

// Two checkpoints: #4 from attempt 1 on vast-1, #5 from attempt 2 on ws1.
inline sched::v1::ListCheckpointsResponse TwoCheckpoints() {
  sched::v1::ListCheckpointsResponse list;
  *list.add_checkpoints() =
      SampleCheckpoint(4, "step-000240", 1, "vast-1", 13'400, 1, absl::Seconds(190));
  *list.add_checkpoints() =
      SampleCheckpoint(5, "step-000260", 2, "ws1", 4 << 20, 2, absl::Hours(3) + absl::Minutes(20));
  return list;
}

}  // namespace sched::client::testing
