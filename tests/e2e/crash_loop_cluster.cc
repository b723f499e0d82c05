#include "tests/e2e/crash_loop_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace sched::crash_loop {
namespace {

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

SchedIncarnations::SchedIncarnations(std::string dir, int port)
    : dir_(std::move(dir)), port_(port) {}

std::string SchedIncarnations::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string SchedIncarnations::LogPath() const {
  return absl::StrCat(dir_, "/schedd-", incarnation_, ".log");
}

absl::StatusOr<absl::Duration> SchedIncarnations::Start(const std::string& failpoints,
                                                        uint64_t seed, absl::Duration timeout) {
  ++incarnation_;
  std::vector<std::string> argv = {testing::BinaryPath("schedd"),
                                   "--data_dir=" + dir_ + "/schedd-data",
                                   "--listen=" + address(),
                                   "--metrics_listen=",
                                   "--lease_ttl_ms=2000",
                                   "--heartbeat_interval_ms=300",
                                   "--restart_grace_ms=1000"};
  if (!failpoints.empty()) {
    argv.push_back("--failpoints=" + failpoints);
    argv.push_back(absl::StrCat("--failpoint_seed=", seed));
  }
  const absl::Time start = absl::Now();
  proc_ = std::make_unique<testing::Subprocess>(std::move(argv), LogPath());
  while (absl::Now() - start < timeout) {
    if (Accepts(port_)) return absl::Now() - start;
    if (!proc_->running()) {
      if (!CrashedAt().empty()) return absl::AbortedError("failpoint crash before serving");
      return absl::UnavailableError(absl::StrCat("schedd incarnation ", incarnation_,
                                                 " exited on its own: ", ReadFile(LogPath())));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return absl::UnavailableError(absl::StrCat("schedd incarnation ", incarnation_,
                                             " did not serve within ", absl::FormatDuration(timeout),
                                             ": ", ReadFile(LogPath())));
}

bool SchedIncarnations::running() { return proc_ != nullptr && proc_->running(); }

void SchedIncarnations::Kill() {
  if (proc_ != nullptr) proc_->Signal(SIGKILL);
}

std::string SchedIncarnations::CrashedAt() const {
  const std::string log = ReadFile(LogPath());
  const std::string marker = "failpoint ";
  size_t at = log.rfind(": crash\n");
  if (at == std::string::npos) return "";
  size_t begin = log.rfind(marker, at);
  if (begin == std::string::npos) return "";
  begin += marker.size();
  return log.substr(begin, at - begin);
}

std::vector<std::unique_ptr<testing::Subprocess>> StartAgents(const std::string& dir,
                                                              const std::string& address,
                                                              int count) {
  std::vector<std::unique_ptr<testing::Subprocess>> agents;
  for (int i = 1; i <= count; ++i) {
    const std::string name = absl::StrCat("a", i);
    agents.push_back(std::make_unique<testing::Subprocess>(
        std::vector<std::string>{testing::BinaryPath("sched-agent"), "--server=" + address,
                                 "--name=" + name, "--work_dir=" + dir + "/" + name,
                                 "--metrics_listen=", "--gpu_detection=none",
                                 "--kill_grace_ms=200"},
        dir + "/" + name + ".log"));
  }
  return agents;
}

}  // namespace sched::crash_loop
