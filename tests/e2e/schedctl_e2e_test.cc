// The real binaries as processes: schedd, one sched-agent, and schedctl run the way a user runs
// it. Each test checks what the user sees: stdout, stderr and the exit code.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "sched/v1/cost_service.pb.h"
#include "sched/v1/job_service.pb.h"
#include "sched/v1/node_service.pb.h"
#include "sched/v1/types.pb.h"
#include "tests/testing/subprocess.h"

extern char** environ;

namespace sched {
namespace {

using ::sched::testing::BinaryPath;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kNode[] = "e2e-node";

struct CliResult {
  int exit_code = -1;  // -1 when the process did not exit by itself (signal, timeout)
  bool timed_out = false;
  std::string out;
  std::string err;
};

struct CliOptions {
  std::vector<std::string> env;  // NAME=value added to the child's environment
  std::string stdin_data;
  // Checked after each read from stdout; once true the child gets SIGTERM (for -w).
  std::function<bool(const std::string& out)> stop_when;
  int timeout_ms = 20'000;
};

// Runs `argv` to its end with stdout and stderr captured through pipes. SCHED_SERVER is taken
// out of the inherited environment so that only `options.env` can set it.
CliResult RunProcess(const std::vector<std::string>& argv, const CliOptions& options) {
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "SCHED_SERVER=")) env_storage.emplace_back(*e);
  }
  env_storage.insert(env_storage.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = argv;
  std::vector<char*> args;
  for (std::string& a : argv_storage) args.push_back(a.data());
  args.push_back(nullptr);

  int in_pipe[2], out_pipe[2], err_pipe[2];
  CliResult result;
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return result;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  // Small inputs only: they fit the pipe's buffer, so this cannot block.
  if (!options.stdin_data.empty()) {
    EXPECT_EQ(write(in_pipe[1], options.stdin_data.data(), options.stdin_data.size()),
              static_cast<ssize_t>(options.stdin_data.size()));
  }
  close(in_pipe[1]);

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool stopped = false;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
    if (!stopped && options.stop_when && options.stop_when(result.out)) {
      kill(pid, SIGTERM);
      stopped = true;
    }
  }
  for (const pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && !result.timed_out) result.exit_code = WEXITSTATUS(status);
  return result;
}

std::ostream& operator<<(std::ostream& os, const CliResult& r) {
  return os << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << "\n--- stdout\n"
            << r.out << "--- stderr\n"
            << r.err;
}

CliOptions WithStdin(std::string data) {
  CliOptions options;
  options.stdin_data = std::move(data);
  return options;
}

CliOptions WithEnv(std::string name_value) {
  CliOptions options;
  options.env.push_back(std::move(name_value));
  return options;
}

CliOptions WithTimeout(int timeout_ms) {
  CliOptions options;
  options.timeout_ms = timeout_ms;
  return options;
}

CliResult Schedctl(std::vector<std::string> args, const CliOptions& options = {}) {
  args.insert(args.begin(), BinaryPath("schedctl"));
  return RunProcess(args, options);
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::vector<std::string> Fields(const std::string& line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}

// The whitespace-separated cells of the table row whose first cell is `key`; empty if none.
std::vector<std::string> TableRow(const std::string& table, const std::string& key) {
  for (const std::string& line : Lines(table)) {
    std::vector<std::string> fields = Fields(line);
    if (!fields.empty() && fields[0] == key) return fields;
  }
  return {};
}

template <typename Message>
bool ParseJson(const std::string& json, Message* message) {
  return google::protobuf::util::JsonStringToMessage(json, message).ok();
}

// One schedd and one agent for the whole suite; each test uses its own jobs.
class SchedctlE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("sched_schedctl_e2e_"));
    const int port = PickFreePort();
    address_ = new std::string(absl::StrCat("127.0.0.1:", port));
    schedd_ = new Subprocess({BinaryPath("schedd"), "--data_dir=" + *dir_ + "/schedd",
                              "--listen=" + *address_, "--metrics_listen="},
                             *dir_ + "/schedd.log");
    if (!WaitForPort(port, 10'000)) return;
    agent_ = new Subprocess({BinaryPath("sched-agent"), "--server=" + *address_,
                             std::string("--name=") + kNode, "--work_dir=" + *dir_ + "/agent",
                             "--metrics_listen=", "--gpu_detection=none", "--kill_grace_ms=1000"},
                            *dir_ + "/agent.log");
    for (int i = 0; i < 200 && !ready_; ++i) {
      CliResult r = Schedctl({"--server", *address_, "get", "node", kNode, "-o", "json"});
      sched::v1::Node node;
      ready_ = r.exit_code == 0 && ParseJson(r.out, &node) &&
               node.state() == sched::v1::NODE_STATE_READY;
      if (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  static void TearDownTestSuite() {
    delete agent_;
    delete schedd_;
    agent_ = nullptr;
    schedd_ = nullptr;
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) {
      std::filesystem::remove_all(*dir_);
    } else {
      std::printf("schedd and agent logs kept in %s\n", dir_->c_str());
    }
    delete dir_;
    delete address_;
  }

  void SetUp() override {
    ASSERT_TRUE(ready_) << "schedd and agent did not come up; logs in " << *dir_;
  }

  // schedctl --server <this cluster> args...
  static CliResult Ctl(std::vector<std::string> args, const CliOptions& options = {}) {
    args.insert(args.begin(), {"--server", *address_});
    return Schedctl(std::move(args), options);
  }

  static std::string WriteSpec(const std::string& name, const std::string& yaml) {
    const std::string path = *dir_ + "/" + name;
    std::ofstream(path) << yaml;
    return path;
  }

  // Submits the file and returns the new job's id, checking the one line schedctl prints.
  static std::string Submit(const std::string& spec_path) {
    CliResult r = Ctl({"submit", "-f", spec_path});
    std::smatch m;
    const std::regex line("job/([0-9a-f]{16}) submitted\n");
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(std::regex_match(r.out, m, line)) << r;
    EXPECT_EQ(r.err, "");
    return m.empty() ? "" : m[1].str();
  }

  static sched::v1::Job GetJob(const std::string& id) {
    CliResult r = Ctl({"get", "job", id, "-o", "json"});
    sched::v1::Job job;
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(ParseJson(r.out, &job)) << r;
    return job;
  }

  static sched::v1::Job WaitForState(const std::string& id, sched::v1::JobState state) {
    sched::v1::Job job;
    for (int i = 0; i < 200; ++i) {
      job = GetJob(id);
      if (job.state() == state) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_EQ(job.state(), state) << job.DebugString();
    return job;
  }

  static int CountJobs() {
    CliResult r = Ctl({"get", "jobs", "-o", "json"});
    sched::v1::ListJobsResponse jobs;
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(ParseJson(r.out, &jobs)) << r;
    return jobs.jobs_size();
  }

  static std::string NodeStateInTable() {
    CliResult r = Ctl({"get", "nodes"});
    EXPECT_EQ(r.exit_code, 0) << r;
    std::vector<std::string> row = TableRow(r.out, kNode);
    EXPECT_GE(row.size(), 2u) << r;
    return row.size() >= 2 ? row[1] : "";
  }

  static inline std::string* dir_ = nullptr;
  static inline std::string* address_ = nullptr;
  static inline Subprocess* schedd_ = nullptr;
  static inline Subprocess* agent_ = nullptr;
  static inline bool ready_ = false;
};

TEST_F(SchedctlE2eTest, SubmitFollowLogsThenGetInEveryFormat) {
  const std::string spec = WriteSpec("hello.yaml", R"(name: hello-e2e
project: e2e
run: |
  echo "hello from $SCHED_JOB_ID"
  sleep 0.3
  echo done
resources: {cpus: 0.1}
)");
  const std::string id = Submit(spec);
  ASSERT_EQ(id.size(), 16u);
  const std::string prefix = id.substr(0, 6);

  // Started while the job runs; returns once it has ended, with every line.
  CliResult logs = Ctl({"logs", "-f", prefix});
  EXPECT_EQ(logs.exit_code, 0) << logs;
  EXPECT_EQ(logs.out, absl::StrCat("hello from ", id, "\ndone\n"));
  EXPECT_EQ(logs.err, "");

  CliResult table = Ctl({"get", "jobs"});
  EXPECT_EQ(table.exit_code, 0) << table;
  EXPECT_EQ(Fields(Lines(table.out).at(0)),
            (std::vector<std::string>{"ID", "NAME", "PROJECT", "STATE", "NODE", "ATTEMPT", "AGE"}));
  std::vector<std::string> row = TableRow(table.out, id);
  ASSERT_EQ(row.size(), 7u) << table;
  EXPECT_EQ(row[1], "hello-e2e");
  EXPECT_EQ(row[2], "e2e");
  EXPECT_EQ(row[3], "SUCCEEDED");
  EXPECT_EQ(row[4], kNode);
  EXPECT_EQ(row[5], "1");

  CliResult wide = Ctl({"get", "jobs", "-o", "wide", "--project", "e2e"});
  EXPECT_EQ(wide.exit_code, 0) << wide;
  row = TableRow(wide.out, id);
  ASSERT_GE(row.size(), 12u) << wide;
  EXPECT_EQ(Fields(Lines(wide.out).at(0)).at(11), "EXIT");
  EXPECT_EQ(row[11], "0");

  CliResult json = Ctl({"get", "job", prefix, "-o", "json"});
  EXPECT_EQ(json.exit_code, 0) << json;
  sched::v1::Job job;
  ASSERT_TRUE(ParseJson(json.out, &job)) << json;
  EXPECT_EQ(job.id(), id);
  EXPECT_EQ(job.state(), sched::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.exit_code(), 0);
  EXPECT_EQ(job.node(), kNode);
  EXPECT_EQ(job.attempt(), 1u);
  EXPECT_EQ(job.spec().name(), "hello-e2e");
  EXPECT_EQ(job.spec().project(), "e2e");
  EXPECT_EQ(job.spec().run(), "echo \"hello from $SCHED_JOB_ID\"\nsleep 0.3\necho done\n");

  CliResult yaml = Ctl({"get", "job", prefix, "-o", "yaml"});
  EXPECT_EQ(yaml.exit_code, 0) << yaml;
  EXPECT_TRUE(std::regex_search(yaml.out, std::regex(absl::StrCat("(^|\n)id: \"?", id, "\"?\n"))))
      << yaml;
  EXPECT_THAT(yaml.out, HasSubstr("state: JOB_STATE_SUCCEEDED\n"));

  // Output is kept after the job ended.
  CliResult again = Ctl({"logs", id});
  EXPECT_EQ(again.exit_code, 0) << again;
  EXPECT_EQ(again.out, logs.out);
}

TEST_F(SchedctlE2eTest, SpecFromStdinAndRetriedRequestIdMakeOneJob) {
  const std::string yaml = "name: idem\nrun: echo once\nresources: {cpus: 0.1}\n";
  const int before = CountJobs();
  CliResult first = Ctl({"submit", "-f", "-", "--request-id", "e2e-request-1"}, WithStdin(yaml));
  EXPECT_EQ(first.exit_code, 0) << first;
  std::smatch m;
  ASSERT_TRUE(std::regex_match(first.out, m, std::regex("job/([0-9a-f]{16}) submitted\n")))
      << first;
  const std::string id = m[1].str();

  CliResult second = Ctl({"submit", "-f", "-", "--request-id", "e2e-request-1"}, WithStdin(yaml));
  EXPECT_EQ(second.exit_code, 0) << second;
  EXPECT_EQ(second.out, absl::StrCat("job/", id, " submitted (existing)\n"));
  EXPECT_EQ(CountJobs(), before + 1);
  EXPECT_EQ(GetJob(id).request_id(), "e2e-request-1");
}

TEST_F(SchedctlE2eTest, BadSpecsAreRefusedByTheClientNamingTheKey) {
  const int before = CountJobs();
  struct Case {
    std::string file;
    std::string yaml;
    std::string message;  // after "error: INVALID_ARGUMENT: <path>: "
  };
  const std::vector<Case> cases = {
      {"unknown_key.yaml", "run: echo hi\nresources:\n  gpus: 1\n  gpu_memry: 24GB\n",
       "resources.gpu_memry: unknown key (expected one of: gpus, gpu_memory, gpu_model, cpus, "
       "memory, share_gpu)"},
      {"bad_value.yaml", "run: echo hi\nresources:\n  gpus: two\n",
       "resources.gpus: expected a non-negative integer, got \"two\""},
      {"priority.yaml", "run: echo hi\npriority: 5000\n",
       "priority: must be in -1000..1000, got 5000"},
      {"no_run.yaml", "name: nothing-to-run\n", "run: required"},
  };
  for (const Case& c : cases) {
    const std::string path = WriteSpec(c.file, c.yaml);
    CliResult r = Ctl({"submit", "-f", path});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, absl::StrCat("error: INVALID_ARGUMENT: ", path, ": ", c.message, "\n"));
  }

  const std::string path = WriteSpec("syntax.yaml", "run: [echo\n");
  CliResult syntax = Ctl({"submit", "-f", path});
  EXPECT_EQ(syntax.exit_code, 1) << syntax;
  EXPECT_THAT(syntax.err, StartsWith(absl::StrCat("error: INVALID_ARGUMENT: ", path,
                                                  ": invalid YAML at line ")));

  CliResult missing = Ctl({"submit", "-f", *dir_ + "/no-such.yaml"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_THAT(missing.err, StartsWith("error: NOT_FOUND: cannot open "));

  EXPECT_EQ(CountJobs(), before);
}

TEST_F(SchedctlE2eTest, ServerValidationReachesTheUser) {
  const int before = CountJobs();
  struct Case {
    std::string file;
    std::string yaml;
    std::string message;  // the server's, with no file name in front
  };
  const std::vector<Case> cases = {
      {"space.yaml", "name: \"has space\"\nrun: echo hi\n",
       "name: must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter "
       "or digit, got \"has space\""},
      {"reserved_env.yaml", "run: echo hi\nenv: {SCHED_X: 1}\n",
       "env.SCHED_X: the SCHED_ prefix is reserved"},
      {"gpu_memory.yaml", "run: echo hi\nresources: {gpu_memory: 8GB}\n",
       "resources.gpu_memory: set, but resources.gpus is 0"},
  };
  for (const Case& c : cases) {
    CliResult r = Ctl({"submit", "-f", WriteSpec(c.file, c.yaml)});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, absl::StrCat("error: INVALID_ARGUMENT: ", c.message, "\n"));
  }
  EXPECT_EQ(CountJobs(), before);

  CliResult unknown = Ctl({"get", "job", "ffffffffffffffff"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown;
  EXPECT_EQ(unknown.err, "error: NOT_FOUND: job ffffffffffffffff not found\n");
}

TEST_F(SchedctlE2eTest, CancelRunningJobThenCancelAgainFails) {
  const std::string id = Submit(WriteSpec("sleep.yaml", "run: sleep 30\nresources: {cpus: 0.1}\n"));
  ASSERT_FALSE(id.empty());
  WaitForState(id, sched::v1::JOB_STATE_RUNNING);

  CliResult cancel = Ctl({"cancel", id.substr(0, 8), "--reason", "e2e says stop"});
  EXPECT_EQ(cancel.exit_code, 0) << cancel;
  EXPECT_EQ(cancel.out, absl::StrCat("job/", id, " cancel requested\n"));

  // logs -f returns once the job has ended.
  CliResult logs = Ctl({"logs", "-f", id}, WithTimeout(10'000));
  EXPECT_EQ(logs.exit_code, 0) << logs;
  sched::v1::Job job = WaitForState(id, sched::v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(job.cancel_requested());
  EXPECT_EQ(job.message(), "e2e says stop");

  CliResult again = Ctl({"cancel", id});
  EXPECT_EQ(again.exit_code, 1) << again;
  EXPECT_EQ(again.out, "");
  EXPECT_THAT(again.err, StartsWith("error: FAILED_PRECONDITION: "));
  EXPECT_THAT(again.err, HasSubstr(id));
}

TEST_F(SchedctlE2eTest, NodesListedCordonedAndUncordoned) {
  CliResult nodes = Ctl({"get", "nodes"});
  EXPECT_EQ(nodes.exit_code, 0) << nodes;
  EXPECT_EQ(Fields(Lines(nodes.out).at(0)),
            (std::vector<std::string>{"NAME", "STATE", "CPUS", "MEMORY", "GPUS", "PROVIDER",
                                      "PRICE/H", "COST", "JOBS", "AGE"}));
  EXPECT_EQ(TableRow(nodes.out, kNode).at(1), "READY");

  CliResult cordon = Ctl({"cordon", kNode});
  EXPECT_EQ(cordon.exit_code, 0) << cordon;
  EXPECT_EQ(cordon.out, absl::StrCat("node/", kNode, " cordoned\n"));
  EXPECT_EQ(NodeStateInTable(), "CORDONED");

  // Nothing can be placed now: the job stays PENDING, and a PENDING job is cancelled at once.
  const std::string id =
      Submit(WriteSpec("while_cordoned.yaml", "run: echo hi\nresources: {cpus: 0.1}\n"));
  EXPECT_EQ(GetJob(id).state(), sched::v1::JOB_STATE_PENDING);
  CliResult cancel = Ctl({"cancel", id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel;
  EXPECT_EQ(cancel.out, absl::StrCat("job/", id, " cancelled\n"));
  EXPECT_EQ(GetJob(id).state(), sched::v1::JOB_STATE_CANCELLED);

  CliResult uncordon = Ctl({"uncordon", kNode});
  EXPECT_EQ(uncordon.exit_code, 0) << uncordon;
  EXPECT_EQ(uncordon.out, absl::StrCat("node/", kNode, " uncordoned\n"));
  EXPECT_EQ(NodeStateInTable(), "READY");

  CliResult json = Ctl({"get", "node", kNode, "-o", "json"});
  EXPECT_EQ(json.exit_code, 0) << json;
  sched::v1::Node node;
  ASSERT_TRUE(ParseJson(json.out, &node)) << json;
  EXPECT_EQ(node.name(), kNode);
  EXPECT_EQ(node.state(), sched::v1::NODE_STATE_READY);
  EXPECT_TRUE(node.connected());

  CliResult describe = Ctl({"describe", "node", kNode});
  EXPECT_EQ(describe.exit_code, 0) << describe;
  EXPECT_THAT(describe.out, StartsWith(absl::StrCat("Name:")));
  EXPECT_TRUE(std::regex_search(describe.out, std::regex("\nState: +READY\n"))) << describe;
  EXPECT_TRUE(std::regex_search(describe.out, std::regex("\nConnected: +yes\n"))) << describe;

  CliResult unknown = Ctl({"cordon", "no-such-node"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown;
  EXPECT_THAT(unknown.err, StartsWith("error: NOT_FOUND: "));
}

TEST_F(SchedctlE2eTest, DescribeJobShowsExitCodeAndNode) {
  const std::string id =
      Submit(WriteSpec("exit3.yaml", "name: exits-3\nrun: exit 3\nresources: {cpus: 0.1}\n"));
  ASSERT_FALSE(id.empty());
  WaitForState(id, sched::v1::JOB_STATE_FAILED);

  CliResult r = Ctl({"describe", "job", id.substr(0, 7)});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_THAT(r.out, StartsWith("ID:"));
  for (const std::string& pattern :
       {absl::StrCat("^ID: +", id, "\n"), std::string("\nName: +exits-3\n"),
        std::string("\nState: +FAILED\n"), std::string("\nExit Code: +3\n"),
        absl::StrCat("\nNode: +", kNode, "\n"), std::string("\nRun:\n  exit 3\n")}) {
    EXPECT_TRUE(std::regex_search(r.out, std::regex(pattern))) << pattern << "\n" << r;
  }
}

TEST_F(SchedctlE2eTest, ARetryPolicyRestartsAFailingJobUntilItSucceeds) {
  const std::string id = Submit(WriteSpec("flaky.yaml", R"(name: flaky
run: |
  echo "attempt $SCHED_ATTEMPT"
  [ "$SCHED_ATTEMPT" -ge 3 ] || exit 75
retry: {max_restarts: 3, exit_codes: [75], backoff: 1s}
resources: {cpus: 0.1}
)"));
  ASSERT_FALSE(id.empty());
  // Two failures, held 1 s and then 2 s before their restarts.
  sched::v1::Job job;
  for (int i = 0; i < 400; ++i) {
    job = GetJob(id);
    if (job.state() == sched::v1::JOB_STATE_SUCCEEDED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(job.state(), sched::v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.restarts(), 2u);
  EXPECT_EQ(job.attempt(), 3u);
  ASSERT_EQ(job.attempts_size(), 3);
  EXPECT_EQ(job.attempts(0).end_reason(), "exit code 75");
  EXPECT_EQ(job.attempts(1).end_reason(), "exit code 75");
  EXPECT_EQ(job.attempts(2).end_reason(), "succeeded");
  // The second restart waited at least twice the first's backoff.
  const int64_t held_ms = (job.attempts(2).start_time().seconds() * 1000 +
                           job.attempts(2).start_time().nanos() / 1'000'000) -
                          (job.attempts(1).end_time().seconds() * 1000 +
                           job.attempts(1).end_time().nanos() / 1'000'000);
  EXPECT_GE(held_ms, 2000);
  CliResult r = Ctl({"describe", "job", id});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\nRestarts: +2 of 3 \\(on exit code 75; backoff 1s doubling up to 10m\\)\n")))
      << r;
  CliResult logs = Ctl({"logs", id});
  EXPECT_EQ(logs.exit_code, 0) << logs;
  EXPECT_THAT(logs.out, HasSubstr("attempt 3\n"));
}

TEST_F(SchedctlE2eTest, MaxDurationStopsAJobThatRunsTooLong) {
  const std::string id = Submit(WriteSpec("long.yaml", R"(name: too-long
run: |
  trap 'echo stopping; exit 143' TERM
  echo started
  sleep 60 & wait
max_duration: 2s
resources: {cpus: 0.1}
)"));
  ASSERT_FALSE(id.empty());
  sched::v1::Job job;
  for (int i = 0; i < 400; ++i) {
    job = GetJob(id);
    if (job.state() == sched::v1::JOB_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(job.state(), sched::v1::JOB_STATE_FAILED) << job.DebugString();
  EXPECT_EQ(job.message(), "ran 2s, its max_duration is 2s");
  EXPECT_EQ(job.restarts(), 0u);
  EXPECT_GE(job.run_seconds(), 2.0);
  EXPECT_LT(job.run_seconds(), 10.0);
  // It was stopped with SIGTERM, as a cancel is, so it could save its work.
  CliResult logs = Ctl({"logs", id});
  EXPECT_THAT(logs.out, HasSubstr("started\nstopping\n"));
}

// A 3x3x3 grid, nine runs at a time: each run's loss at step s is q + 10/s, with
// q = |A-2| + |B-2| + |C-2|, so run 13 (A=B=C=2) is the best and the runs with q = 3 are behind
// the median at every step. The first nine have only each other to go by (one ahead of the rest
// has no one to be judged against); every later run is judged against the runs before it.
TEST_F(SchedctlE2eTest, AGridSweepStopsItsWeakRunsEarlyAndReportsTheBest) {
  CliResult submitted = Ctl({"submit", "-f", WriteSpec("grid.yaml", R"yaml(name: grid
project: e2e-sweep
run: |
  q=$(( (A>2?A-2:2-A) + (B>2?B-2:2-B) + (C>2?C-2:2-C) ))
  for s in 1 2 3 4 5 6 7 8 9; do
    sleep 0.2
    echo "step=$s loss=$(awk -v q=$q -v s=$s 'BEGIN { print q + 10 / s }')" >> "$SCHED_METRICS_FILE"
  done
  echo "run $SCHED_ARRAY_INDEX of sweep $SCHED_SWEEP_ID done"
resources: {cpus: 0.05}
sweep:
  parameters:
    A: [1, 2, 3]
    B: {from: 1, to: 3, step: 1}
    C: {from: 1, to: 3, count: 3}
  max_parallel: 9
  metric: loss
  goal: minimize
  early_stopping: {rule: median, min_step: 3, min_runs: 3}
)yaml")});
  ASSERT_EQ(submitted.exit_code, 0) << submitted;
  std::smatch m;
  ASSERT_TRUE(std::regex_match(submitted.out, m,
                               std::regex("sweep/([0-9a-f]{16}) submitted: 27 jobs\n")))
      << submitted;
  const std::string sweep_id = m[1].str();
  sched::v1::SweepStatus sweep;
  for (int i = 0; i < 1200; ++i) {
    CliResult r = Ctl({"get", "sweep", sweep_id.substr(0, 8), "-o", "json"});
    ASSERT_EQ(r.exit_code, 0) << r;
    ASSERT_TRUE(ParseJson(r.out, &sweep)) << r;
    bool all_ended = sweep.runs_size() == 27;
    for (const sched::v1::Job& run : sweep.runs()) {
      all_ended = all_ended && (run.state() == sched::v1::JOB_STATE_SUCCEEDED ||
                                run.state() == sched::v1::JOB_STATE_STOPPED_EARLY ||
                                run.state() == sched::v1::JOB_STATE_FAILED);
    }
    if (all_ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(sweep.runs_size(), 27);
  int stopped = 0;
  for (const sched::v1::Job& run : sweep.runs()) {
    const int a = std::stoi(run.parameters().at("A"));
    const int b = std::stoi(run.parameters().at("B"));
    const int c = std::stoi(run.parameters().at("C"));
    const int q = std::abs(a - 2) + std::abs(b - 2) + std::abs(c - 2);
    EXPECT_EQ(run.array_index(), static_cast<uint32_t>((a - 1) * 9 + (b - 1) * 3 + (c - 1)));
    EXPECT_NE(run.state(), sched::v1::JOB_STATE_FAILED) << run.DebugString();
    if (run.state() == sched::v1::JOB_STATE_STOPPED_EARLY) {
      ++stopped;
      EXPECT_THAT(run.message(), HasSubstr("is worse than the median")) << run.DebugString();
    }
    // The weakest are always behind the median; the strongest never are.
    if (q == 3 && run.array_index() >= 9) {
      EXPECT_EQ(run.state(), sched::v1::JOB_STATE_STOPPED_EARLY) << run.DebugString();
    }
    if (q <= 1) EXPECT_EQ(run.state(), sched::v1::JOB_STATE_SUCCEEDED) << run.DebugString();
  }
  EXPECT_GE(stopped, 4);
  ASSERT_EQ(sweep.best_index(), 13);
  const sched::v1::Job& best = sweep.runs(13);
  EXPECT_EQ(best.state(), sched::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(best.metric_step(), 9);
  EXPECT_NEAR(best.metrics().at("loss"), 10.0 / 9, 1e-4);
  CliResult table = Ctl({"get", "sweep", sweep_id});
  EXPECT_EQ(table.exit_code, 0) << table;
  EXPECT_THAT(table.out, HasSubstr("best: run 13 (A=2 B=2 C=2), job/" + best.id() +
                                   ", loss 1.11111 at step 9 (lower is better)\n"));
  EXPECT_TRUE(std::regex_search(table.out, std::regex("\n13 +" + best.id().substr(0, 8) +
                                                      " +SUCCEEDED +2 +2 +2 +9 +1.11111 +best\n")))
      << table;
  CliResult logs = Ctl({"logs", best.id()});
  EXPECT_EQ(logs.out, absl::StrCat("run 13 of sweep ", sweep_id, " done\n"));
  if (std::getenv("SCHED_E2E_PRINT") != nullptr) std::printf("%s", table.out.c_str());
}

TEST_F(SchedctlE2eTest, WatchPrintsARowForEachChange) {
  const std::string id =
      Submit(WriteSpec("watched.yaml", "run: sleep 0.5\nresources: {cpus: 0.1}\n"));
  ASSERT_FALSE(id.empty());
  CliOptions until_succeeded = WithTimeout(10'000);
  until_succeeded.stop_when = [](const std::string& out) {
    return absl::StrContains(out, " SUCCEEDED ");
  };
  CliResult watch = Ctl({"get", "job", id, "-w"}, until_succeeded);
  EXPECT_FALSE(watch.timed_out) << watch;
  const std::vector<std::string> lines = Lines(watch.out);
  ASSERT_GE(lines.size(), 3u) << watch;  // header, the job as it was, at least one change
  EXPECT_EQ(Fields(lines[0]).at(0), "ID");
  for (size_t i = 1; i < lines.size(); ++i) EXPECT_EQ(Fields(lines[i]).at(0), id) << watch;
  EXPECT_THAT(Fields(lines[1]).at(3), ::testing::AnyOf("PENDING", "ASSIGNED", "RUNNING"));
  EXPECT_EQ(Fields(lines.back()).at(3), "SUCCEEDED");
}

TEST_F(SchedctlE2eTest, ServerFromEnvironmentAndFlagWins) {
  CliResult from_env = Schedctl({"get", "nodes"}, WithEnv("SCHED_SERVER=" + *address_));
  EXPECT_EQ(from_env.exit_code, 0) << from_env;
  EXPECT_EQ(TableRow(from_env.out, kNode).at(1), "READY");

  const std::string nobody = absl::StrCat("127.0.0.1:", PickFreePort());
  CliResult flag_wins = Ctl({"get", "nodes"}, WithEnv("SCHED_SERVER=" + nobody));
  EXPECT_EQ(flag_wins.exit_code, 0) << flag_wins;
}

// Money end to end: an agent priced at $36/h (a cent a second, so a short job costs enough to
// see) runs a job; the ledger meters it, and budget and cost report show it.
TEST(SchedctlCostE2eTest, BudgetAndCostReportShowWhatAJobCost) {
  const std::string dir = MakeTempDir("sched_cost_e2e_");
  const int port = PickFreePort();
  const std::string address = absl::StrCat("127.0.0.1:", port);
  Subprocess schedd({BinaryPath("schedd"), "--data_dir=" + dir + "/schedd", "--listen=" + address,
                     "--metrics_listen="},
                    dir + "/schedd.log");
  ASSERT_TRUE(WaitForPort(port, 10'000));
  Subprocess agent({BinaryPath("sched-agent"), "--server=" + address, "--name=rented",
                    "--work_dir=" + dir + "/agent", "--metrics_listen=", "--gpu_detection=none",
                    "--price_per_hour=36", "--provider=runpod"},
                   dir + "/agent.log");
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", address});
    return Schedctl(std::move(args));
  };
  CliResult set = ctl({"budget", "set", "llm", "--monthly", "50", "--alerts", "50,90"});
  ASSERT_EQ(set.exit_code, 0) << set;
  EXPECT_EQ(set.out,
            "budget/llm set: $50.00 a month, alerts at 50%, 90%, hard cap; spent this month "
            "$0.00\n");
  CliResult bad = ctl({"budget", "set", "llm", "--monthly", "50", "--alerts", "90,50"});
  EXPECT_EQ(bad.exit_code, 1) << bad;
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT: alert_percents"));

  const std::string spec = dir + "/job.yaml";
  std::ofstream(spec) << "name: paid\nproject: llm\nrun: sleep 1\n";
  CliResult submit = ctl({"submit", "-f", spec});
  ASSERT_EQ(submit.exit_code, 0) << submit;
  const std::string id = submit.out.substr(4, 16);
  sched::v1::Job job;
  for (int i = 0; i < 400; ++i) {
    CliResult get = ctl({"get", "job", id, "-o", "json"});
    if (get.exit_code == 0 && ParseJson(get.out, &job) &&
        job.state() == sched::v1::JOB_STATE_SUCCEEDED) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(job.state(), sched::v1::JOB_STATE_SUCCEEDED) << job.DebugString();

  // The lease lasted the job's second plus its start and report: a bit over a cent.
  CliResult report = ctl({"cost", "report", "--by", "provider", "-o", "json"});
  ASSERT_EQ(report.exit_code, 0) << report;
  sched::v1::CostReport costs;
  ASSERT_TRUE(ParseJson(report.out, &costs)) << report;
  ASSERT_EQ(costs.lines_size(), 1) << report;
  EXPECT_EQ(costs.lines(0).key(), "runpod");
  EXPECT_EQ(costs.lines(0).leases(), 1u);
  EXPECT_GT(costs.lines(0).dollars(), 0.0099);
  EXPECT_LT(costs.lines(0).dollars(), 0.05);
  EXPECT_DOUBLE_EQ(costs.total_dollars(), costs.lines(0).dollars());

  CliResult table = ctl({"cost", "report", "--by", "job", "--since", "1d"});
  ASSERT_EQ(table.exit_code, 0) << table;
  EXPECT_THAT(table.out, StartsWith("Cost from "));
  std::vector<std::string> row = TableRow(table.out, id);
  ASSERT_EQ(row.size(), 4u) << table;
  EXPECT_THAT(row[1], StartsWith("$0.0"));
  EXPECT_EQ(row[3], "1");
  EXPECT_EQ(TableRow(table.out, "TOTAL").size(), 2u) << table;

  CliResult describe = ctl({"describe", "job", id});
  ASSERT_EQ(describe.exit_code, 0) << describe;
  EXPECT_THAT(describe.out, HasSubstr("  Spent:       $0.0"));
  EXPECT_THAT(describe.out, HasSubstr("(1 lease, 0.00 node-hours)"));

  CliResult budgets = ctl({"budget", "get"});
  ASSERT_EQ(budgets.exit_code, 0) << budgets;
  row = TableRow(budgets.out, "llm");
  ASSERT_EQ(row.size(), 7u) << budgets;
  EXPECT_EQ(row[1], "$50.00");
  EXPECT_THAT(row[2], StartsWith("$0.0"));
  EXPECT_EQ(row[4], "50,90%");
  EXPECT_EQ(row[5], "-");  // a cent of fifty dollars crosses no threshold
  EXPECT_EQ(row[6], "hard");
  // A budget the job's cost (a second or more at a cent a second) passes half of, and that would
  // take fifteen seconds to pass ten times over: the 50% alert shows as crossed.
  ASSERT_EQ(ctl({"budget", "set", "llm", "--monthly", "0.015", "--alerts", "50,1000"}).exit_code,
            0);
  row = TableRow(ctl({"budget", "get", "llm"}).out, "llm");
  ASSERT_EQ(row.size(), 7u);
  EXPECT_EQ(row[5], "50%");
  CliResult missing = ctl({"budget", "get", "nope"});
  EXPECT_EQ(missing.exit_code, 1) << missing;
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  std::filesystem::remove_all(dir);
}

TEST(SchedctlNoServerTest, UnreachableServerIsUnavailable) {
  const std::string nobody = absl::StrCat("127.0.0.1:", PickFreePort());
  CliResult get = Schedctl({"--server", nobody, "--timeout", "1s", "get", "jobs"});
  EXPECT_EQ(get.exit_code, 1) << get;
  EXPECT_EQ(get.out, "");
  EXPECT_THAT(get.err, StartsWith("error: UNAVAILABLE: "));

  // submit retries UNAVAILABLE with backoff (200 + 400 + 800 ms) before giving up.
  const std::string dir = MakeTempDir("sched_schedctl_e2e_nosrv_");
  const std::string spec = dir + "/job.yaml";
  std::ofstream(spec) << "run: echo hi\n";
  const auto start = std::chrono::steady_clock::now();
  CliResult submit = Schedctl({"--server", nobody, "--timeout", "1s", "submit", "-f", spec});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(submit.exit_code, 1) << submit;
  EXPECT_THAT(submit.err, StartsWith("error: UNAVAILABLE: "));
  EXPECT_GE(took, std::chrono::milliseconds(1400));
  EXPECT_LT(took, std::chrono::seconds(8));
  std::filesystem::remove_all(dir);
}

TEST(SchedctlNoServerTest, UsageErrorsExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string error;  // the first line of stderr
    std::string usage;  // the second
  };
  const std::vector<Case> cases = {
      {{"frobnicate"}, "error: unknown command \"frobnicate\"", "usage: schedctl [--server ADDR]"},
      {{"get", "widgets"},
       "error: unknown resource \"widgets\" (expected jobs, nodes, tokens or sweep)",
       "usage: schedctl get jobs|job [ID]|nodes|node [NAME]"},
      {{"get", "jobs", "-o", "xml"},
       "error: -o: unknown output format \"xml\" (expected wide, json or yaml)",
       "usage: schedctl get "},
      {{"get", "nodes", "-w"},
       "error: -w, --state, --project and --limit apply to jobs only",
       "usage: schedctl get "},
      {{"--timeout", "0s", "get", "jobs"},
       "error: --timeout: expected a positive duration such as 10s, got \"0s\"",
       "usage: schedctl get "},
      {{"submit"}, "error: ", "usage: schedctl submit -f FILE|- [--request-id ID]"},
      {{"describe", "job"}, "error: a job ID is required", "usage: schedctl describe job ID"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--server", "127.0.0.1:1"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliResult r = Schedctl(args);
    EXPECT_EQ(r.exit_code, 2) << r;
    const std::vector<std::string> lines = Lines(r.err);
    ASSERT_GE(lines.size(), 2u) << r;
    EXPECT_THAT(lines[0], StartsWith(c.error)) << r;
    EXPECT_THAT(lines[1], StartsWith(c.usage)) << r;
  }

  CliResult help = Schedctl({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("submit"));
}

}  // namespace
}  // namespace sched
