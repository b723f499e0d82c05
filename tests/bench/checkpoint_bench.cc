// sched-checkpoint-bench: checkpoint upload and download over loopback against a plain copy of
// the same files on the same disk, in one process.
//
// Starts schedd (the real Daemon on RocksDB under --dir, its CheckpointService on a loopback
// port) with one node holding one job's lease, writes a checkpoint of --files files of random
// bytes totalling --mib MiB, then times, each --rounds times (the best kept):
//   copy      a plain copy of the files (read, write, fsync each file): the baseline
//   upload    checkpoint::Upload as the agent runs it: chunking, sha256, the gRPC calls, and
//             schedd checking and fsyncing each chunk (a fresh checkpoint each round: new bytes)
//   again     the same checkpoint again under a new name: every chunk is there, none is sent
//   download  checkpoint::Download as the agent and schedctl run it, every chunk's sha256 checked
// and prints key=value lines, MB/s and each against the copy.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "server/checkpoint/checkpoint_transfer.h"
#include "server/common/memory.h"
#include "server/daemon/daemon.h"
#include "tests/testing/fake_agent_link.h"

ABSL_FLAG(std::string, dir, "/tmp/sched-checkpoint-bench", "Scratch folder (emptied first).");
ABSL_FLAG(int, mib, 256, "Checkpoint size in MiB.");
ABSL_FLAG(int, files, 4, "Files it is spread over.");
ABSL_FLAG(int, rounds, 3, "Times each is measured; the best is kept.");
ABSL_FLAG(std::string, perf_fifo, "",
          "Profiling: a fifo that `perf record -D -1 --control=fifo:PATH` reads; the bench writes "
          "enable and disable to it around each round of --perf_step.");
ABSL_FLAG(std::string, perf_step, "upload", "The step --perf_fifo profiles: upload or download.");
ABSL_FLAG(bool, fresh_pages, true,
          "Write and delete twice the checkpoint's size of scratch file before each timed step.");

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Written 1 MiB at a time: a big buffer freed just before the timed copy would hand it pages
// the host already backs, a start the upload after it does not get (this VM returns memory left
// free a while to its host, and the first touch of such a page is slow).
void WriteRandom(const fs::path& path, size_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(1 << 20, '\0');
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (size_t done = 0; done < bytes; done += data.size()) {
    const size_t n = std::min(data.size(), bytes - done);
    for (size_t i = 0; i + 8 <= n; i += 8) {
      const uint64_t v = rng();
      std::memcpy(data.data() + i, &v, 8);
    }
    if (write(fd, data.data(), n) != static_cast<ssize_t>(n)) std::abort();
  }
  fsync(fd);
  close(fd);
}

// Writes and deletes `bytes` of scratch file in `dir`, so the step timed next finds that much
// page cache just freed (see WriteRandom); every timed step is preceded by one.
void FreshPages(const fs::path& dir, size_t bytes) {
  const fs::path scratch = dir / "scratch";
  std::string data(1 << 20, 'x');
  const int fd = open(scratch.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (size_t done = 0; done < bytes; done += data.size()) {
    if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  }
  close(fd);
  fs::remove(scratch);
}

// A checkpoint folder of random bytes.
void MakeCheckpoint(const fs::path& dir, int files, size_t total, uint64_t seed) {
  fs::create_directories(dir);
  for (int i = 0; i < files; ++i) {
    WriteRandom(dir / absl::StrCat("part-", i, ".bin"), total / files, seed * 1000 + i);
  }
}

// cp with an fsync per file: what keeping a copy of the files durably costs on this disk.
void PlainCopy(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  std::string buf(1 << 20, '\0');
  for (const auto& entry : fs::directory_iterator(from)) {
    const int in = open(entry.path().c_str(), O_RDONLY);
    const int out =
        open((to / entry.path().filename()).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t n;
    while ((n = read(in, buf.data(), buf.size())) > 0) {
      if (write(out, buf.data(), n) != n) std::abort();
    }
    fsync(out);
    close(in);
    close(out);
  }
}

// Turns perf's recording on or off around `step` when --perf_fifo names perf's control fifo.
void Profile(bool on, const std::string& step) {
  const std::string fifo = absl::GetFlag(FLAGS_perf_fifo);
  if (fifo.empty() || absl::GetFlag(FLAGS_perf_step) != step) return;
  const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  const std::string command = on ? "enable\n" : "disable\n";
  if (write(fd, command.data(), command.size()) < 0) std::perror("perf fifo");
  close(fd);
  usleep(20'000);  // perf acts on it before the step starts (or after it ended)
}

}  // namespace

int main(int argc, char** argv) {
  sched::KeepFreedMemoryForReuse();  // as schedd, the agent and schedctl do
  absl::ParseCommandLine(argc, argv);
  const fs::path root = absl::GetFlag(FLAGS_dir);
  const size_t total = static_cast<size_t>(absl::GetFlag(FLAGS_mib)) << 20;
  const int files = absl::GetFlag(FLAGS_files);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const bool fresh = absl::GetFlag(FLAGS_fresh_pages);
  fs::remove_all(root);
  fs::create_directories(root);

  sched::DaemonOptions o;
  o.data_dir = (root / "schedd").string();
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  o.checkpoint_keep = 1000;
  o.lease_ttl_ms = 3'600'000;  // the bench's node never heartbeats
  o.heartbeat_interval_ms = 600'000;
  auto daemon = sched::Daemon::Start(o);
  if (!daemon.ok()) {
    std::fprintf(stderr, "schedd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  sched::Scheduler* s = (*daemon)->scheduler();
  auto link = std::make_shared<sched::testing::FakeAgentLink>();
  sched::NodeCapabilities caps;
  caps.cpu_millis = 4000;
  caps.memory_bytes = int64_t{8} << 30;
  std::optional<absl::StatusOr<uint64_t>> session;
  s->ConnectAgent("bench", caps, {}, link, [&](absl::StatusOr<uint64_t> r) { session = r; });
  sched::JobSpec spec;
  spec.name = "bench";
  spec.run = "true";
  spec.resources.cpu_millis = 1000;
  std::string job_id;
  s->Submit(spec, "", [&](absl::StatusOr<sched::SubmitResult> r) {
    if (r.ok()) job_id = r->job.id;
  });
  uint64_t epoch = 0;
  for (int i = 0; i < 200 && epoch == 0; ++i) {
    for (const auto& c : link->Take()) {
      if (c.kind == "assign" && c.job_id == job_id) epoch = c.epoch;
    }
    if (epoch == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (epoch == 0) {
    std::fprintf(stderr, "the job was not assigned\n");
    return 1;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*daemon)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = sched::v1::CheckpointService::NewStub(channel);
  sched::v1::CheckpointUploader who;
  who.set_job_id(job_id);
  who.set_epoch(epoch);
  who.set_node_name("bench");

  double copy_s = 1e9, upload_s = 1e9, again_s = 1e9, download_s = 1e9;
  double upload_cpu_s = 1e9, download_cpu_s = 1e9;  // CPU time of both sides together
  for (int r = 0; r < rounds; ++r) {
    const fs::path src = root / "job" / absl::StrCat("step-", r);
    MakeCheckpoint(src, files, total, r + 1);
    if (fresh) FreshPages(root, 2 * total);
    auto t0 = Clock::now();
    PlainCopy(src, root / "copy" / absl::StrCat("step-", r));
    copy_s = std::min(copy_s, Seconds(t0));

    if (fresh) FreshPages(root, 2 * total);
    Profile(true, "upload");
    t0 = Clock::now();
    const double cpu0 = CpuSeconds();
    sched::checkpoint::UploadStats stats;
    auto up = sched::checkpoint::Upload(*stub, who, 1, src.string(), absl::Minutes(10), &stats);
    if (!up.ok() || stats.bytes_sent != total) {
      std::fprintf(stderr, "upload: %s\n", up.status().ToString().c_str());
      return 1;
    }
    upload_s = std::min(upload_s, Seconds(t0));
    Profile(false, "upload");
    upload_cpu_s = std::min(upload_cpu_s, CpuSeconds() - cpu0);

    const fs::path same = root / "job" / absl::StrCat("again-", r);
    fs::copy(src, same);
    t0 = Clock::now();
    sched::checkpoint::UploadStats none;
    auto again = sched::checkpoint::Upload(*stub, who, 1, same.string(), absl::Minutes(10), &none);
    if (!again.ok() || none.chunks_sent != 0) {
      std::fprintf(stderr, "upload again: %s\n", again.status().ToString().c_str());
      return 1;
    }
    again_s = std::min(again_s, Seconds(t0));

    if (fresh) FreshPages(root, 2 * total);
    Profile(true, "download");
    t0 = Clock::now();
    const double down_cpu0 = CpuSeconds();
    auto down = sched::checkpoint::Download(
        *stub, job_id, up->seq(), (root / "home" / absl::StrCat(r)).string(), absl::Minutes(10));
    if (!down.ok()) {
      std::fprintf(stderr, "download: %s\n", down.status().ToString().c_str());
      return 1;
    }
    download_s = std::min(download_s, Seconds(t0));
    Profile(false, "download");
    download_cpu_s = std::min(download_cpu_s, CpuSeconds() - down_cpu0);
  }
  const double mb = static_cast<double>(total) / 1e6;
  std::printf(
      "checkpoint: mib=%d files=%d rounds=%d copy_mb_s=%.0f upload_mb_s=%.0f "
      "upload_vs_copy=%.2f upload_cpu_s=%.3f again_s=%.3f download_mb_s=%.0f "
      "download_vs_copy=%.2f download_cpu_s=%.3f\n",
      absl::GetFlag(FLAGS_mib), files, rounds, mb / copy_s, mb / upload_s, copy_s / upload_s,
      upload_cpu_s, again_s, mb / download_s, copy_s / download_s, download_cpu_s);
  daemon->reset();
  fs::remove_all(root);
  return 0;
}
