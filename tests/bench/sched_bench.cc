// sched-bench: load generator for schedd's API. Measures what docs/benchmarks.md reports:
//   --mode=submit        durable SubmitJob calls/s from many concurrent callers, ack latency
//   --mode=lone          one caller, one call at a time: ack latency
//   --mode=start         submit -> process started on an idle agent, one job at a time
//   --mode=drain         submit --jobs trivial jobs, then wait until all have ended: the time
//                        from the first submit to the last end
// It prints one line of key=value figures so scripts can compare runs.
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "sched/v1/job_service.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "schedd address");
ABSL_FLAG(std::string, mode, "submit", "submit | lone | start | drain");
ABSL_FLAG(int, channels, 4, "gRPC channels (connections) for --mode=submit");
ABSL_FLAG(int, in_flight, 64, "concurrent calls for --mode=submit");
ABSL_FLAG(double, seconds, 5, "how long --mode=submit and --mode=lone run");
ABSL_FLAG(int, jobs, 200, "jobs for --mode=start and --mode=drain");
ABSL_FLAG(std::string, marker_dir, "/tmp/sched-bench-start",
          "folder where --mode=start jobs write their start time");
ABSL_FLAG(std::string, project, "bench", "project of the submitted jobs");
ABSL_FLAG(std::string, submit_cmd, "",
          "--mode=start: submit with this shell command instead of the API; {run} is replaced "
          "by the job's script, quoted (e.g. \"sbatch -Q --wrap {run}\" for Slurm, "
          "\"schedctl submit -f - <<< ...\" for the CLI)");

namespace {

using Clock = std::chrono::steady_clock;

int64_t WallNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

sched::v1::SubmitJobRequest Request(const std::string& run, uint64_t n) {
  sched::v1::SubmitJobRequest req;
  req.mutable_spec()->set_name("bench");
  req.mutable_spec()->set_project(absl::GetFlag(FLAGS_project));
  req.mutable_spec()->set_run(run);
  req.set_request_id(absl::StrCat("bench-", getpid(), "-", WallNanos(), "-", n));
  return req;
}

struct SubmitFigures {
  uint64_t ok = 0;
  uint64_t failed = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;
};

// Keeps `in_flight` SubmitJob calls outstanding over the callback client API until `seconds`
// have passed or `max_jobs` calls were made.
SubmitFigures SubmitMany(double seconds, uint64_t max_jobs) {
  const int n_channels = absl::GetFlag(FLAGS_channels);
  const int in_flight = absl::GetFlag(FLAGS_in_flight);
  std::vector<std::unique_ptr<sched::v1::JobService::Stub>> stubs;
  for (int i = 0; i < n_channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct channels, distinct connections
    stubs.push_back(sched::v1::JobService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials(), args)));
  }
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(seconds));
  absl::Mutex mu;
  std::vector<double> latencies_ms;
  std::atomic<uint64_t> ok{0}, failed{0}, seq{0};
  std::atomic<int> active{0};

  struct Call {
    grpc::ClientContext ctx;
    sched::v1::SubmitJobRequest req;
    sched::v1::SubmitJobResponse resp;
    Clock::time_point start;
  };
  std::function<void(int)> launch = [&](int slot) {
    const uint64_t n = seq++;
    if (n >= max_jobs || Clock::now() >= deadline) {
      active--;
      return;
    }
    auto* call = new Call;
    call->req = Request("true", n);
    call->start = Clock::now();
    stubs[slot % n_channels]->async()->SubmitJob(
        &call->ctx, &call->req, &call->resp, [&, call, slot](grpc::Status s) {
          const double ms =
              std::chrono::duration<double, std::milli>(Clock::now() - call->start).count();
          if (s.ok()) {
            ok++;
            absl::MutexLock lock(&mu);
            latencies_ms.push_back(ms);
          } else {
            failed++;
          }
          delete call;
          launch(slot);
        });
  };
  const auto t0 = Clock::now();
  active = in_flight;
  for (int i = 0; i < in_flight; ++i) launch(i);
  while (active.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  SubmitFigures figures;
  figures.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  figures.ok = ok.load();
  figures.failed = failed.load();
  absl::MutexLock lock(&mu);
  figures.latencies_ms = std::move(latencies_ms);
  return figures;
}

int RunSubmit() {
  SubmitFigures f = SubmitMany(absl::GetFlag(FLAGS_seconds), UINT64_MAX);
  std::printf("mode=submit ok=%lu failed=%lu seconds=%.2f jobs_per_s=%.0f p50_ms=%.3f "
              "p99_ms=%.3f in_flight=%d channels=%d\n",
              f.ok, f.failed, f.seconds, f.ok / f.seconds, Percentile(f.latencies_ms, 0.5),
              Percentile(f.latencies_ms, 0.99), absl::GetFlag(FLAGS_in_flight),
              absl::GetFlag(FLAGS_channels));
  return f.failed == 0 ? 0 : 1;
}

// Submits --jobs jobs that run `true`, then polls until none is pending, assigned or running.
int RunDrain() {
  const int jobs = absl::GetFlag(FLAGS_jobs);
  const auto t0 = Clock::now();
  SubmitFigures f = SubmitMany(1e9, jobs);
  if (f.failed != 0) {
    std::fprintf(stderr, "%lu submits failed\n", f.failed);
    return 1;
  }
  auto stub = sched::v1::JobService::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials()));
  while (true) {
    grpc::ClientContext ctx;
    sched::v1::ListJobsRequest req;
    req.add_states(sched::v1::JOB_STATE_PENDING);
    req.add_states(sched::v1::JOB_STATE_ASSIGNED);
    req.add_states(sched::v1::JOB_STATE_RUNNING);
    req.set_page_size(1);
    sched::v1::ListJobsResponse resp;
    if (grpc::Status s = stub->ListJobs(&ctx, req, &resp); !s.ok()) {
      std::fprintf(stderr, "list failed: %s\n", s.error_message().c_str());
      return 1;
    }
    if (resp.jobs_size() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("mode=drain jobs=%d submit_s=%.2f seconds=%.2f jobs_per_s=%.0f\n", jobs, f.seconds,
              secs, jobs / secs);
  return 0;
}

int RunLone() {
  auto stub = sched::v1::JobService::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials()));
  std::vector<double> ms;
  const auto t0 = Clock::now();
  uint64_t n = 0;
  while (std::chrono::duration<double>(Clock::now() - t0).count() < absl::GetFlag(FLAGS_seconds)) {
    grpc::ClientContext ctx;
    sched::v1::SubmitJobResponse resp;
    auto req = Request("true", n++);
    auto start = Clock::now();
    grpc::Status s = stub->SubmitJob(&ctx, req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "submit failed: %s\n", s.error_message().c_str());
      return 1;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::printf("mode=lone calls=%zu p50_ms=%.3f p99_ms=%.3f\n", ms.size(), Percentile(ms, 0.5),
              Percentile(ms, 0.99));
  return 0;
}

// Each job writes the wall-clock nanoseconds at which its shell started into a marker file.
int RunStart() {
  auto stub = sched::v1::JobService::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials()));
  const std::string dir = absl::GetFlag(FLAGS_marker_dir);
  mkdir(dir.c_str(), 0755);
  std::vector<double> ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_jobs); ++i) {
    const std::string marker = absl::StrCat(dir, "/", getpid(), "-", i);
    // $EPOCHREALTIME-free sh: date(1) is the first thing the job runs.
    auto req = Request(absl::StrCat("date +%s%N > ", marker, ".tmp && mv ", marker, ".tmp ",
                                    marker),
                       i);
    grpc::ClientContext ctx;
    sched::v1::SubmitJobResponse resp;
    const int64_t t0 = WallNanos();
    const std::string cmd = absl::GetFlag(FLAGS_submit_cmd);
    if (!cmd.empty()) {
      std::string line = absl::StrReplaceAll(cmd, {{"{run}", "'" + req.spec().run() + "'"}});
      if (std::system(line.c_str()) != 0) {
        std::fprintf(stderr, "submit command failed: %s\n", line.c_str());
        return 1;
      }
    } else if (grpc::Status s = stub->SubmitJob(&ctx, req, &resp); !s.ok()) {
      std::fprintf(stderr, "submit failed: %s\n", s.error_message().c_str());
      return 1;
    }
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    int64_t started = 0;
    while (Clock::now() < give_up) {
      std::ifstream in(marker);
      if (in >> started) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (started == 0) {
      std::fprintf(stderr, "job %d did not start within 30 s\n", i);
      return 1;
    }
    ms.push_back((started - t0) / 1e6);
    unlink(marker.c_str());
  }
  std::printf("mode=start jobs=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", ms.size(),
              Percentile(ms, 0.5), Percentile(ms, 0.99), Percentile(ms, 1.0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "submit") return RunSubmit();
  if (mode == "lone") return RunLone();
  if (mode == "start") return RunStart();
  if (mode == "drain") return RunDrain();
  std::fprintf(stderr, "unknown --mode=%s (submit | lone | start | drain)\n", mode.c_str());
  return 2;
}
