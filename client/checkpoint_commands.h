#pragma once

// schedctl's checkpoint commands: checkpoints JOB and checkpoint get (docs/checkpoints.md).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/commands.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "sched/v1/checkpoint_service.pb.h"

namespace sched::client {

struct CheckpointListArgs {
  std::string job_id;  // or a unique prefix
  OutputFormat output = OutputFormat::kTable;
};
// A table (CheckpointTableHeader), oldest first, or the ListCheckpointsResponse as JSON/YAML.
// A job without checkpoints gets one line: "No checkpoints for job <job_id>. ..." with where a
// job publishes them.
absl::Status RunCheckpointList(const CheckpointListArgs& args, CommandContext& ctx);

struct CheckpointGetArgs {
  std::string job_id;  // or a unique prefix
  uint64_t seq = 0;    // 0: the newest
  std::string to = ".";
};
// Downloads the checkpoint into `to`/<name> and prints DownloadSummary. ALREADY_EXISTS when
// `to`/<name> is there already (the message suggests --to); NOT_FOUND, as schedd says it, for an
// unknown job or a checkpoint it does not keep.
absl::Status RunCheckpointGet(const CheckpointGetArgs& args, CommandContext& ctx);

// Columns: SEQ NAME ATTEMPT NODE SIZE FILES AGE.
std::vector<std::string> CheckpointTableHeader();
std::vector<std::string> CheckpointTableRow(const sched::v1::Checkpoint& checkpoint,
                                            absl::Time now);
void PrintCheckpointTable(const google::protobuf::RepeatedPtrField<sched::v1::Checkpoint>& list,
                          absl::Time now, std::ostream& out);

// "checkpoint step-000120 (#3, 13.8KB, 2 files) -> ./step-000120", with its newline.
std::string DownloadSummary(const sched::v1::Checkpoint& checkpoint, const std::string& path);

}  // namespace sched::client
