// The real binaries on a broken network: schedd and two sched-agents as processes, each agent
// dialling schedd through its own FaultProxy. A full partition, one-way loss each way, and a
// paused agent (SIGSTOP, a Vast.ai instance frozen and woken later). In each: the job goes to
// the other agent once the lease runs out, the cut-off agent's late reports change nothing, it
// stops its own copy, and the job has exactly one terminal outcome, in its record and in the
// WatchJobs feed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/agent_service.grpc.pb.h"
#include "sched/v1/job_service.grpc.pb.h"
#include "sched/v1/node_service.grpc.pb.h"
#include "tests/testing/fault_proxy.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

using ::sched::testing::BinaryPath;
using ::sched::testing::FaultProxy;
using ::sched::testing::MakeTempDir;
using ::sched::testing::PickFreePort;
using ::sched::testing::Subprocess;
using ::sched::testing::WaitForPort;

constexpr absl::Duration kLeaseTtl = absl::Milliseconds(1500);
constexpr absl::Duration kHeartbeat = absl::Milliseconds(250);
constexpr absl::Duration kTick = absl::Milliseconds(100);  // DaemonOptions::tick_interval_ms
// Room for a loaded 2-core machine (other builds run beside the tests). Small next to a lease,
// so a re-assignment that waited for a second lease, or for the agent to come back, still fails.
constexpr absl::Duration kSlack = absl::Milliseconds(1000);
// A lease was renewed at most one heartbeat before the cut; less than this is an early re-queue.
const absl::Duration kEarliestReassign = kLeaseTtl - kHeartbeat - absl::Milliseconds(150);
const absl::Duration kLatestReassign = kLeaseTtl + kTick + kSlack;

bool Terminal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

bool Eventually(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// The state letter of /proc/<pid>/stat: R, S, T (stopped), Z...; empty if gone.
std::string ProcessState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return state;
}

bool Alive(pid_t pid) {
  const std::string state = ProcessState(pid);
  return !state.empty() && state != "Z";
}

// schedd's /metrics, one counter; -1 when it cannot be read.
double Metric(int port, const std::string& name) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string body;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) body.append(buf, n);
  }
  close(fd);
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    if (absl::StartsWith(line, name + " ")) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

// Every change WatchJobs reports from the start of the test, with the time it arrived.
class JobHistory {
 public:
  struct Event {
    v1::Job job;
    absl::Time seen;
  };

  explicit JobHistory(v1::JobService::Stub* stub) {
    reader_ = stub->WatchJobs(&context_, v1::WatchJobsRequest());
    thread_ = std::thread([this] {
      v1::WatchJobsResponse resp;
      while (reader_->Read(&resp)) {
        absl::MutexLock lock(&mu_);
        events_.push_back({resp.job(), absl::Now()});
      }
    });
  }
  ~JobHistory() {
    context_.TryCancel();
    thread_.join();
  }

  // The first change of job `id` that `match` accepts, waiting up to `timeout` for it.
  std::optional<Event> WaitFor(const std::string& id,
                               const std::function<bool(const v1::Job&)>& match,
                               absl::Duration timeout) {
    std::optional<Event> found;
    Eventually(
        [&] {
          absl::MutexLock lock(&mu_);
          for (const Event& e : events_) {
            if (e.job.id() == id && match(e.job)) {
              found = e;
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }

  // The feed's side of the invariant: the epoch never goes down, and the job reaches one
  // terminal outcome (one state, one epoch) and never leaves it.
  void ExpectOneTerminalOutcome(const std::string& id) {
    // The feed may be a moment behind the GetJob that saw the end (a loaded machine).
    WaitFor(id, [](const v1::Job& j) { return Terminal(j.state()); }, absl::Seconds(5));
    absl::MutexLock lock(&mu_);
    uint64_t epoch = 0;
    std::optional<v1::Job> terminal;
    int changes = 0;
    for (const Event& e : events_) {
      if (e.job.id() != id) continue;
      changes++;
      EXPECT_GE(e.job.epoch(), epoch) << "epoch went down: " << e.job.ShortDebugString();
      epoch = std::max(epoch, e.job.epoch());
      if (terminal.has_value()) {
        ADD_FAILURE() << "a change after the terminal state "
                      << v1::JobState_Name(terminal->state()) << " at epoch " << terminal->epoch()
                      << ": " << e.job.ShortDebugString();
      } else if (Terminal(e.job.state())) {
        terminal = e.job;
      }
    }
    EXPECT_TRUE(terminal.has_value())
        << "job " << id << " never ended in the feed (" << changes << " changes seen)";
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WatchJobsResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

class PartitionTest : public ::testing::Test {
 protected:
  static constexpr const char* kNames[2] = {"a", "b"};

  void SetUp() override {
    dir_ = MakeTempDir("sched_partition_");
    const int port = PickFreePort();
    metrics_port_ = PickFreePort();
    schedd_ = std::make_unique<Subprocess>(
        std::vector<std::string>{
            BinaryPath("schedd"), "--data_dir=" + dir_ + "/schedd",
            absl::StrCat("--listen=127.0.0.1:", port),
            absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_),
            absl::StrCat("--lease_ttl_ms=", absl::ToInt64Milliseconds(kLeaseTtl)),
            absl::StrCat("--heartbeat_interval_ms=", absl::ToInt64Milliseconds(kHeartbeat))},
        dir_ + "/schedd.log");
    ASSERT_TRUE(WaitForPort(port, 10'000)) << "schedd did not start; see " << dir_;
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel);
    nodes_ = v1::NodeService::NewStub(channel);
    agent_service_ = v1::AgentService::NewStub(channel);
    history_ = std::make_unique<JobHistory>(jobs_.get());
    for (int i = 0; i < 2; ++i) {
      auto proxy = FaultProxy::Start(port);
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      proxies_[i] = *std::move(proxy);
      const std::string name = kNames[i];
      agents_[i] = std::make_unique<Subprocess>(
          std::vector<std::string>{BinaryPath("sched-agent"), "--server=" + proxies_[i]->address(),
                                   "--name=" + name, "--work_dir=" + dir_ + "/" + name,
                                   "--metrics_listen=", "--gpu_detection=none",
                                   "--kill_grace_ms=500"},
          dir_ + "/" + name + ".log");
    }
    for (const char* name : kNames) {
      ASSERT_TRUE(
          Eventually([&] { return NodeState(name) == v1::NODE_STATE_READY; }, absl::Seconds(10)))
          << "agent " << name << " did not register; see " << dir_;
    }
  }

  void TearDown() override {
    for (auto& agent : agents_) {
      if (agent != nullptr) agent->Signal(SIGCONT);  // a stopped agent cannot die of SIGKILL late
    }
    for (auto& agent : agents_) agent.reset();
    // Job processes lead their own process groups: kill what the agents left.
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      if (entry.path().extension() != ".pid") continue;
      pid_t pid = 0;
      std::ifstream(entry.path()) >> pid;
      if (pid > 1) kill(-pid, SIGKILL);
    }
    history_.reset();
    schedd_.reset();
    if (HasFailure() || std::getenv("SCHED_KEEP_LOGS") != nullptr) {
      std::printf("logs kept in %s\n", dir_.c_str());
    } else {
      std::filesystem::remove_all(dir_);
    }
  }

  int Index(const std::string& name) const { return name == kNames[0] ? 0 : 1; }
  FaultProxy& Proxy(const std::string& name) { return *proxies_[Index(name)]; }
  Subprocess& Agent(const std::string& name) { return *agents_[Index(name)]; }
  static std::string Other(const std::string& name) {
    return name == kNames[0] ? kNames[1] : kNames[0];
  }

  v1::NodeState NodeState(const std::string& name) {
    grpc::ClientContext ctx;
    v1::GetNodeRequest req;
    req.set_name(name);
    v1::Node node;
    return nodes_->GetNode(&ctx, req, &node).ok() ? node.state() : v1::NODE_STATE_UNSPECIFIED;
  }

  // A job that prints its attempt and the folder it runs in, writes its shell's pid to
  // <dir>/<name>-<attempt>.pid, sleeps (the first attempt `first_s`, later ones `later_s`
  // seconds) and prints that it is done.
  std::string Submit(const std::string& name, double first_s, double later_s) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name(name);
    req.mutable_spec()->set_run(
        absl::StrCat("echo \"attempt $SCHED_ATTEMPT start in $PWD\"; echo $$ > ", dir_, "/", name,
                     "-$SCHED_ATTEMPT.pid; if [ \"$SCHED_ATTEMPT\" = 1 ]; then sleep ", first_s,
                     "; else sleep ", later_s, "; fi; echo \"attempt $SCHED_ATTEMPT done\""));
    req.mutable_spec()->mutable_resources()->set_cpus(0.5);
    v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job().id();
  }

  v1::Job GetJob(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    grpc::Status s = jobs_->GetJob(&ctx, req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  // Every attempt's stored output, in order.
  std::string Logs(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobLogsRequest req;
    req.set_job_id(id);
    auto reader = jobs_->GetJobLogs(&ctx, req);
    std::string out;
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) out += chunk.data();
    reader->Finish();
    return out;
  }

  // Waits until the job runs on some node and its first line is stored.
  v1::Job WaitRunning(const std::string& id) {
    v1::Job job;
    EXPECT_TRUE(Eventually(
        [&] {
          job = GetJob(id);
          return job.state() == v1::JOB_STATE_RUNNING &&
                 absl::StrContains(Logs(id), absl::StrCat("attempt ", job.attempt(), " start"));
        },
        absl::Seconds(10)))
        << "job " << id << " is " << v1::JobState_Name(job.state());
    return job;
  }

  v1::Job WaitTerminal(const std::string& id, absl::Duration timeout) {
    v1::Job job;
    Eventually(
        [&] {
          job = GetJob(id);
          return Terminal(job.state());
        },
        timeout);
    return job;
  }

  pid_t PidOf(const std::string& job_name, int attempt) {
    pid_t pid = 0;
    std::ifstream(absl::StrCat(dir_, "/", job_name, "-", attempt, ".pid")) >> pid;
    return pid;
  }

  double Stale() { return Metric(metrics_port_, "sched_stale_reports_total"); }
  double Expiries() { return Metric(metrics_port_, "sched_lease_expiries_total"); }

  std::string AgentLog(const std::string& name) {
    std::ifstream in(dir_ + "/" + name + ".log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // The job ran on `victim` first (attempt 1), lost it, and went to the other node: how long
  // after `cut` schedd re-assigned it, checked against the lease.
  absl::Duration ExpectReassigned(const std::string& id, const v1::Job& first, absl::Time cut,
                                  const char* what) {
    const std::string other = Other(first.node());
    std::optional<JobHistory::Event> moved = history_->WaitFor(
        id, [&](const v1::Job& j) { return j.epoch() > first.epoch() && j.node() == other; },
        absl::Seconds(15));
    if (!moved.has_value()) {
      ADD_FAILURE() << "job " << id << " never went to " << other << " after " << what;
      return absl::InfiniteDuration();
    }
    const absl::Duration took = moved->seen - cut;
    std::printf(
        "%s of %s: job re-assigned to %s (attempt %u) after %.0f ms; lease %lld ms, "
        "heartbeat %lld ms, tick %lld ms\n",
        what, first.node().c_str(), other.c_str(), moved->job.attempt(),
        absl::ToDoubleMilliseconds(took),
        static_cast<long long>(absl::ToInt64Milliseconds(kLeaseTtl)),
        static_cast<long long>(absl::ToInt64Milliseconds(kHeartbeat)),
        static_cast<long long>(absl::ToInt64Milliseconds(kTick)));
    RecordProperty("reassign_ms", static_cast<int>(absl::ToInt64Milliseconds(took)));
    return took;
  }

  // Waits until `victim`'s agent has registered again (its first stream was given up) and is
  // READY, and its late messages, if any, have had time to land.
  void WaitBackAndSettled(const std::string& victim) {
    ASSERT_TRUE(Eventually(
        [&] {
          const std::string log = AgentLog(victim);
          return log.find("registered with") != log.rfind("registered with") &&
                 NodeState(victim) == v1::NODE_STATE_READY;
        },
        absl::Seconds(10)))
        << victim << " did not come back";
    absl::SleepFor(4 * kHeartbeat);
  }

  // The job's record is still `won`, and the feed shows one terminal outcome.
  void ExpectStillWon(const v1::Job& won) {
    const v1::Job after = GetJob(won.id());
    EXPECT_EQ(after.state(), won.state());
    EXPECT_EQ(after.node(), won.node());
    EXPECT_EQ(after.epoch(), won.epoch());
    EXPECT_EQ(after.attempt(), won.attempt());
    EXPECT_EQ(after.finish_time().seconds(), won.finish_time().seconds());
    EXPECT_EQ(after.finish_time().nanos(), won.finish_time().nanos());
    history_->ExpectOneTerminalOutcome(won.id());
  }

  // As ExpectReassigned, and the move came when the lease ran out: not before it could have,
  // and within lease + tick + slack.
  void ExpectReassignedOnLeaseEnd(const std::string& id, const v1::Job& first, absl::Time cut,
                                  const char* what) {
    const absl::Duration took = ExpectReassigned(id, first, cut, what);
    EXPECT_GE(took, kEarliestReassign) << "re-queued before the lease could have run out";
    EXPECT_LE(took, kLatestReassign);
  }

  // The zombie's copy of the first attempt printed its first line and nothing after: its late
  // output was refused. The winning attempt's output is there once.
  void ExpectOnlyWinnerFinishedInLogs(const std::string& id, const v1::Job& winner) {
    const std::string logs = Logs(id);
    EXPECT_THAT(logs, ::testing::HasSubstr("attempt 1 start"));
    EXPECT_THAT(logs, ::testing::Not(::testing::HasSubstr("attempt 1 done")))
        << "output of the cut-off attempt was stored:\n"
        << logs;
    EXPECT_THAT(logs, ::testing::Not(::testing::HasSubstr("zombie output")));
    const std::string done = absl::StrCat("attempt ", winner.attempt(), " done");
    size_t count = 0;
    for (size_t at = logs.find(done); at != std::string::npos; at = logs.find(done, at + 1)) {
      count++;
    }
    EXPECT_EQ(count, 1u) << logs;
  }

  // What schedd answered a zombie of `node` that still holds `stale` (its epoch is over).
  struct ZombieAnswers {
    std::vector<v1::StopJob> stops;
    std::vector<v1::Rejected> rejected;
    bool registered = false;
    bool heartbeat_acked = false;
    std::vector<std::string> all;  // every answer, for failure messages
  };

  // Speaks for a zombie of `node` on a fresh session, sending exactly what the real agent would
  // if it had kept `stale` through the cut: a register that lists the job, the job's
  // completion, a line of its output, and a heartbeat that renews it.
  ZombieAnswers ReplayZombie(const std::string& node, const v1::Job& stale) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = agent_service_->Connect(&ctx);
    v1::AgentMessage msg;
    v1::Register* reg = msg.mutable_register_();
    reg->set_node_name(node);
    reg->mutable_capabilities()->set_cpus(1);
    v1::JobRef* ref = reg->add_running();
    ref->set_job_id(stale.id());
    ref->set_epoch(stale.epoch());
    EXPECT_TRUE(stream->Write(msg));
    msg.Clear();
    v1::JobUpdate* update = msg.mutable_update();
    update->set_job_id(stale.id());
    update->set_epoch(stale.epoch());
    update->set_state(v1::JOB_STATE_SUCCEEDED);
    EXPECT_TRUE(stream->Write(msg));
    msg.Clear();
    v1::AgentLogChunk* log = msg.mutable_log();
    log->set_job_id(stale.id());
    log->set_epoch(stale.epoch());
    log->set_stream(v1::LOG_STREAM_STDOUT);
    log->set_data("zombie output\n");
    EXPECT_TRUE(stream->Write(msg));
    msg.Clear();
    v1::JobRef* held = msg.mutable_heartbeat()->add_running();
    held->set_job_id(stale.id());
    held->set_epoch(stale.epoch());
    EXPECT_TRUE(stream->Write(msg));
    // Two Stops are due (for the register and the heartbeat); the register's may come last,
    // as it is sent once the new session is on disk. The deadline ends a wait for more.
    ZombieAnswers answers;
    v1::ServerMessage in;
    while (!(answers.heartbeat_acked && answers.stops.size() >= 2) && stream->Read(&in)) {
      answers.all.push_back(in.ShortDebugString());
      if (in.has_stop()) answers.stops.push_back(in.stop());
      if (in.has_rejected()) answers.rejected.push_back(in.rejected());
      answers.registered |= in.has_register_ack();
      answers.heartbeat_acked |= in.has_heartbeat_ack();
    }
    EXPECT_TRUE(answers.registered);
    ctx.TryCancel();
    stream->Finish();
    return answers;
  }

  std::string dir_;
  int metrics_port_ = 0;
  std::unique_ptr<Subprocess> schedd_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
  std::unique_ptr<v1::AgentService::Stub> agent_service_;
  std::unique_ptr<JobHistory> history_;
  std::unique_ptr<FaultProxy> proxies_[2];
  std::unique_ptr<Subprocess> agents_[2];
};

// Both directions cut while the job runs; the job ends on the cut-off agent during the cut, so
// that agent holds a completion it cannot deliver.
TEST_F(PartitionTest, FullPartitionReassignsAndTheZombiesCompletionIsRefused) {
  const std::string id = Submit("full", /*first_s=*/0.7, /*later_s=*/0.3);
  const v1::Job first = WaitRunning(id);
  const std::string victim = first.node();
  const std::string other = Other(victim);
  const double expiries_before = Expiries();

  const absl::Time cut = absl::Now();
  Proxy(victim).SetMode(FaultProxy::Mode::kPartition);
  ExpectReassignedOnLeaseEnd(id, first, cut, "full partition");

  const v1::Job won = WaitTerminal(id, absl::Seconds(10));
  EXPECT_EQ(won.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(won.node(), other);
  EXPECT_EQ(won.attempt(), 2u);
  EXPECT_GT(won.epoch(), first.epoch());
  EXPECT_GE(Expiries(), expiries_before + 1);
  // The first attempt ended on the victim while it was cut off.
  EXPECT_FALSE(Alive(PidOf("full", 1)));

  // The victim's completion can't get out, and its agent drops it when its own lease view
  // runs out. What schedd does with such late reports if they do arrive, on a current session:
  const double stale_before = Stale();
  const ZombieAnswers zombie = ReplayZombie(victim, first);
  EXPECT_EQ(Stale() - stale_before, 4) << "register, completion, output and heartbeat of the "
                                          "stale epoch each count as a stale report";
  const std::string answers = absl::StrJoin(zombie.all, "\n");
  ASSERT_EQ(zombie.rejected.size(), 2u) << answers;  // the completion and the output
  for (const v1::Rejected& r : zombie.rejected) {
    EXPECT_EQ(r.code(), 9) << "FAILED_PRECONDITION expected: " << r.message();
    EXPECT_EQ(r.epoch(), first.epoch());
  }
  ASSERT_EQ(zombie.stops.size(), 2u) << answers;  // at register and at the heartbeat
  for (const v1::StopJob& stop : zombie.stops) {
    EXPECT_EQ(stop.job_id(), id);
    EXPECT_EQ(stop.epoch(), first.epoch());
  }
  EXPECT_EQ(GetJob(id).epoch(), won.epoch());

  // Heal: what the victim sent meanwhile (heartbeats, output, its completion) arrives now.
  Proxy(victim).SetMode(FaultProxy::Mode::kPass);
  WaitBackAndSettled(victim);
  ExpectStillWon(won);
  ExpectOnlyWinnerFinishedInLogs(id, won);
  // The victim no longer holds the job: it dropped it, and nothing of it is in its new session.
  EXPECT_THAT(AgentLog(victim),
              ::testing::ContainsRegex(absl::StrCat("job ", id, ": [a-z ]*forgetting it")));
}

// Only the agent's messages are lost: schedd hears nothing, re-queues at the lease's end.
TEST_F(PartitionTest, AgentToServerLossReassignsOnce) {
  const std::string id = Submit("up", /*first_s=*/0.7, /*later_s=*/0.3);
  const v1::Job first = WaitRunning(id);
  const std::string victim = first.node();

  const absl::Time cut = absl::Now();
  Proxy(victim).SetMode(FaultProxy::Mode::kDropClientToServer);
  ExpectReassignedOnLeaseEnd(id, first, cut, "agent->server loss");
  const v1::Job won = WaitTerminal(id, absl::Seconds(10));
  EXPECT_EQ(won.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(won.node(), Other(victim));
  EXPECT_EQ(won.attempt(), 2u);

  Proxy(victim).SetMode(FaultProxy::Mode::kPass);  // resets the connection that lost bytes
  WaitBackAndSettled(victim);
  ExpectStillWon(won);
  ExpectOnlyWinnerFinishedInLogs(id, won);
}

// Only schedd's messages are lost: schedd still hears heartbeats, but the agent hears no acks,
// so it stops its copy when its own view of the lease runs out. The job outlives the lease, so
// it must run again elsewhere.
TEST_F(PartitionTest, ServerToAgentLossStopsTheCopyAndRunsItOnceElsewhere) {
  const std::string id = Submit("down", /*first_s=*/4, /*later_s=*/0.3);
  const v1::Job first = WaitRunning(id);
  const std::string victim = first.node();
  const pid_t copy = PidOf("down", 1);
  ASSERT_GT(copy, 1);

  const absl::Time cut = absl::Now();
  Proxy(victim).SetMode(FaultProxy::Mode::kDropServerToClient);
  // The agent kills its copy one lease after its last ack.
  EXPECT_TRUE(Eventually([&] { return !Alive(copy); }, kLatestReassign + absl::Seconds(1)))
      << "the agent that hears nothing from schedd kept running its copy";
  std::printf("server->agent loss: %s stopped its copy after %.0f ms\n", victim.c_str(),
              absl::ToDoubleMilliseconds(absl::Now() - cut));
  ExpectReassigned(id, first, cut, "server->agent loss");
  const v1::Job won = WaitTerminal(id, absl::Seconds(15));
  EXPECT_EQ(won.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(won.node(), Other(victim));

  Proxy(victim).SetMode(FaultProxy::Mode::kPass);
  WaitBackAndSettled(victim);
  ExpectStillWon(won);
  ExpectOnlyWinnerFinishedInLogs(id, won);
}

// The connection is reset (a NAT box or proxy dropping it): the agent dials again at once and
// keeps its job; nothing is re-run.
TEST_F(PartitionTest, ConnectionResetLosesNothing) {
  const std::string id = Submit("reset", /*first_s=*/1.5, /*later_s=*/0.3);
  const v1::Job first = WaitRunning(id);
  const double expiries_before = Expiries();
  Proxy(first.node()).ResetAll();
  const v1::Job won = WaitTerminal(id, absl::Seconds(10));
  EXPECT_EQ(won.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(won.node(), first.node());
  EXPECT_EQ(won.attempt(), 1u);
  EXPECT_EQ(won.epoch(), first.epoch());
  EXPECT_EQ(Expiries(), expiries_before);
  EXPECT_GE(Proxy(first.node()).accepted(), 2u) << "the agent did not dial again";
  EXPECT_THAT(Logs(id), ::testing::HasSubstr("attempt 1 done"));
  history_->ExpectOneTerminalOutcome(id);
}

// SIGSTOP of the agent process (its jobs run on), longer than the lease, then SIGCONT: a paused
// cloud instance waking up. One job ends while the agent sleeps (its completion is late), one
// still runs when it wakes (the agent must stop it).
TEST_F(PartitionTest, PausedAgentWakesAsAZombieAndIsRefused) {
  const std::string ended_id = Submit("ends", /*first_s=*/1.0, /*later_s=*/0.3);
  const v1::Job ended_first = WaitRunning(ended_id);
  const std::string victim = ended_first.node();
  const std::string runs_id = Submit("runs", /*first_s=*/10, /*later_s=*/0.3);
  const v1::Job runs_first = WaitRunning(runs_id);
  ASSERT_EQ(runs_first.node(), victim) << "best-fit placement should pack both on one node";
  const pid_t running_copy = PidOf("runs", 1);
  ASSERT_GT(running_copy, 1);

  const absl::Time paused = absl::Now();
  Agent(victim).Signal(SIGSTOP);
  ASSERT_TRUE(
      Eventually([&] { return ProcessState(Agent(victim).pid()) == "T"; }, absl::Seconds(2)));
  // Submitted while the victim sleeps and before schedd can know: best-fit sends it to the
  // victim too, whose socket holds the assignment until it wakes, long after that lease ended.
  const std::string late_id = Submit("late", /*first_s=*/10, /*later_s=*/0.3);
  ExpectReassignedOnLeaseEnd(ended_id, ended_first, paused, "SIGSTOP");
  ExpectReassigned(runs_id, runs_first, paused, "SIGSTOP");
  ASSERT_TRUE(Eventually([&] { return GetJob(late_id).state() == v1::JOB_STATE_SUCCEEDED; },
                         absl::Seconds(10)));
  const v1::Job late_won = GetJob(late_id);
  EXPECT_EQ(late_won.node(), Other(victim));
  const v1::Job ended_won = WaitTerminal(ended_id, absl::Seconds(10));
  const v1::Job runs_won = WaitTerminal(runs_id, absl::Seconds(10));
  for (const v1::Job* won : {&ended_won, &runs_won}) {
    EXPECT_EQ(won->state(), v1::JOB_STATE_SUCCEEDED);
    EXPECT_EQ(won->node(), Other(victim));
    EXPECT_EQ(won->attempt(), 2u);
  }
  // The paused agent's copy ran on beside the new one: a true zombie.
  EXPECT_TRUE(Alive(running_copy));
  EXPECT_GE(absl::Now() - paused, kLeaseTtl);

  const absl::Time woke = absl::Now();
  Agent(victim).Signal(SIGCONT);
  EXPECT_TRUE(Eventually([&] { return !Alive(running_copy); }, absl::Seconds(3)))
      << "the woken agent did not stop its stale copy";
  std::printf("SIGCONT: %s stopped its stale copy after %.0f ms\n", victim.c_str(),
              absl::ToDoubleMilliseconds(absl::Now() - woke));
  WaitBackAndSettled(victim);
  // The assignment that waited in the sleeper's socket was stale on arrival: never started.
  ASSERT_TRUE(history_->WaitFor(
      late_id, [&](const v1::Job& j) { return j.attempt() == 1 && j.node() == victim; },
      absl::ZeroDuration()))
      << "the job submitted during the pause was not assigned to the paused node";
  EXPECT_EQ(PidOf("late", 1), 0) << "the woken agent started an assignment whose lease had run "
                                    "out while it slept";

  for (const v1::Job* won : {&ended_won, &runs_won, &late_won}) ExpectStillWon(*won);
  ExpectOnlyWinnerFinishedInLogs(ended_id, ended_won);
  ExpectOnlyWinnerFinishedInLogs(runs_id, runs_won);
  EXPECT_THAT(Logs(late_id), ::testing::Not(::testing::HasSubstr("attempt 1")));
}

}  // namespace
}  // namespace sched
