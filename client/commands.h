#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <ostream>
#include <functional>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "client/sched_client.h"
#include "google/protobuf/message.h"
#include "sched/v1/types.pb.h"
#include "server/common/clock.h"

// What each schedctl command does once its arguments are parsed. Output goes to `out`;
// failures come back as the status to report (the caller prints it and picks the exit code).
namespace sched::client {

enum class OutputFormat { kTable, kWide, kJson, kYaml };
enum class ResourceKind { kJob, kNode, kToken, kSweep };

// kTable or kWide: output for people, not a document.
bool IsTable(OutputFormat format);

// JSON or YAML; `document_start` puts "---" before YAML so that a stream of them parses.
absl::Status PrintDocument(const google::protobuf::Message& message, OutputFormat format,
                           bool document_start, std::ostream& out);

struct CommandContext {
  SchedClient& client;
  std::ostream& out;
  std::istream& in;  // `submit -f -` reads it
  const Clock& clock;
  absl::BitGenRef random;  // request ids
  // The caller's environment, where a spec's `secrets` take their values from.
  std::function<std::optional<std::string>(const std::string& name)> getenv;
};

struct SubmitArgs {
  std::string file;        // "-": read `in`
  std::string request_id;  // empty: a fresh UUID v4
};
// Prints "job/<id> submitted", with " (existing)" when the request id matched an earlier submit.
absl::Status RunSubmit(const SubmitArgs& args, CommandContext& ctx);

struct EstimateArgs {
  std::string file;  // "-": read `in`
  OutputFormat output = OutputFormat::kTable;
};
// Where the job in `file` would go now, ranked with every node's figures; submits nothing.
absl::Status RunEstimate(const EstimateArgs& args, CommandContext& ctx);

struct GetArgs {
  ResourceKind kind = ResourceKind::kJob;
  std::string name;  // empty: list
  OutputFormat output = OutputFormat::kTable;
  bool watch = false;  // jobs only
  std::vector<sched::v1::JobState> states;
  std::string project;
  std::optional<uint32_t> limit;
};
// Tables, or one JSON/YAML document: a Job/Node/Token for a name, else a ListJobsResponse,
// ListNodesResponse or ListTokensResponse holding every item read (tokens: RunTokenList). With
// `watch`, a row (or document) per change until the server ends the stream.
absl::Status RunGet(const GetArgs& args, CommandContext& ctx);

struct DescribeArgs {
  ResourceKind kind = ResourceKind::kJob;
  std::string name;
};
absl::Status RunDescribe(const DescribeArgs& args, CommandContext& ctx);

struct LogsArgs {
  std::string job_id;
  bool follow = false;
  uint32_t attempt = 0;  // 0: every attempt
};
// Writes the data of every chunk, stdout and stderr alike, in the order received.
absl::Status RunLogs(const LogsArgs& args, CommandContext& ctx);

struct CancelArgs {
  std::string job_id;
  std::string reason;
};
// Prints "job/<id> cancelled", or "job/<id> cancel requested" while the process still stops.
absl::Status RunCancel(const CancelArgs& args, CommandContext& ctx);

enum class NodeAction { kCordon, kUncordon, kDrain };
struct NodeActionArgs {
  NodeAction action = NodeAction::kCordon;
  std::string name;
};
// Prints "node/<name> cordoned" (uncordoned, draining).
absl::Status RunNodeAction(const NodeActionArgs& args, CommandContext& ctx);

struct NodeRevokeArgs {
  std::string name;
};
// Prints "node <name> revoked (1 agent stream closed)", "(0 agent streams closed)" when its agent
// was not connected.
absl::Status RunNodeRevoke(const NodeRevokeArgs& args, CommandContext& ctx);

struct BackupArgs {
  std::string path;  // on schedd's machine; made absolute when schedd runs here
  bool skip_checkpoints = false;
};
// Prints "backup <path>: 1,204 jobs, store 3.1MB, 12 checkpoint files (2.0GB), 0.4s".
absl::Status RunBackup(const BackupArgs& args, CommandContext& ctx);

}  // namespace sched::client
