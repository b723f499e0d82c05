#include "client/checkpoint_commands.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "client/resource_view.h"
#include "client/table.h"
#include "client/units.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

using sched::v1::Checkpoint;

std::string Files(int files) { return files == 1 ? "1 file" : absl::StrCat(files, " files"); }

}  // namespace

std::vector<std::string> CheckpointTableHeader() {
  return {"SEQ", "NAME", "ATTEMPT", "NODE", "SIZE", "FILES", "AGE"};
}

std::vector<std::string> CheckpointTableRow(const Checkpoint& c, absl::Time now) {
  return {absl::StrCat(c.seq()),
          OrNone(c.name()),
          absl::StrCat(c.attempt()),
          OrNone(c.node()),
          FormatBytes(static_cast<int64_t>(c.size_bytes())),
          absl::StrCat(c.files_size()),
          AgeOf(c.create_time(), now)};
}

void PrintCheckpointTable(const google::protobuf::RepeatedPtrField<Checkpoint>& list,
                          absl::Time now, std::ostream& out) {
  Table table(CheckpointTableHeader());
  for (const Checkpoint& c : list) table.AddRow(CheckpointTableRow(c, now));
  table.Print(out);
}

std::string DownloadSummary(const Checkpoint& c, const std::string& path) {
  return absl::StrCat("checkpoint ", c.name(), " (#", c.seq(), ", ",
                      FormatBytes(static_cast<int64_t>(c.size_bytes())), ", ",
                      Files(c.files_size()), ") -> ", path, "\n");
}

absl::Status RunCheckpointList(const CheckpointListArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(sched::v1::ListCheckpointsResponse list,
                         ctx.client.ListCheckpoints(args.job_id));
  if (args.output == OutputFormat::kJson || args.output == OutputFormat::kYaml) {
    return PrintDocument(list, args.output, false, ctx.out);
  }
  if (list.checkpoints().empty()) {
    ctx.out << "No checkpoints for job " << args.job_id
            << ". A job publishes them in $SCHED_CHECKPOINT_DIR (docs/checkpoints.md).\n";
    return absl::OkStatus();
  }
  PrintCheckpointTable(list.checkpoints(), ctx.clock.Now(), ctx.out);
  return absl::OkStatus();
}

absl::Status RunCheckpointGet(const CheckpointGetArgs& args, CommandContext& ctx) {
  absl::StatusOr<checkpoint::Downloaded> got =
      ctx.client.DownloadCheckpoint(args.job_id, args.seq, args.to);
  if (got.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(
        absl::StrCat(got.status().message(), "; remove it, or download elsewhere with --to DIR"));
  }
  SCHED_RETURN_IF_ERROR(got.status());
  ctx.out << DownloadSummary(got->manifest, got->path);
  return absl::OkStatus();
}

}  // namespace sched::client
