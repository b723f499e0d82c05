#pragma once

#include <string>
#include <vector>

namespace sched::testing {

// A child process for e2e tests: started with argv, output to `log_path` (or inherited).
// Killed with SIGKILL when destroyed if still running.
class Subprocess {
 public:
  Subprocess(std::vector<std::string> argv, std::string log_path = "");
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  int pid() const { return pid_; }
  bool running();
  // Sends `sig`; for SIGKILL also reaps the child.
  void Signal(int sig);
  // Waits for exit; returns the wait status, or -1 on timeout.
  int Wait(int timeout_ms);

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int PickFreePort();
// True once something accepts connections on 127.0.0.1:port.
bool WaitForPort(int port, int timeout_ms);
// $SCHED_BIN_DIR/bin/<name>, the binaries of the build under test.
std::string BinaryPath(const std::string& name);
// A fresh empty folder under /tmp.
std::string MakeTempDir(const std::string& prefix);

struct ShellOutput {
  int exit_code = -1;  // -1: did not exit normally
  std::string text;    // stdout and stderr together
};
// Runs `command` with /bin/sh to its end.
ShellOutput RunShell(const std::string& command);

}  // namespace sched::testing
