#include "client/commands.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/decision_view.h"
#include "client/describe.h"
#include "client/job_spec_yaml.h"
#include "client/resource_view.h"
#include "client/sweep_view.h"
#include "client/structured_output.h"
#include "client/table.h"
#include "client/token_commands.h"
#include "client/units.h"
#include "client/uuid.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

using sched::v1::Job;

absl::StatusOr<std::string> ReadSpecFile(const std::string& path, std::istream& in) {
  std::ostringstream text;
  if (path == "-") {
    text << in.rdbuf();
    return text.str();
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a folder, not a job spec file"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  text << file.rdbuf();
  if (file.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  return text.str();
}

absl::Status WatchJobs(const GetArgs& args, CommandContext& ctx) {
  sched::v1::WatchJobsRequest request;
  for (sched::v1::JobState s : args.states) request.add_states(s);
  request.set_project(args.project);
  request.set_job_id(args.name);
  const bool wide = args.output == OutputFormat::kWide;
  const std::vector<size_t> widths = JobWatchWidths(wide);
  if (IsTable(args.output)) {
    PrintTableRow(JobTableHeader(wide), widths, ctx.out);
    ctx.out.flush();
  }
  absl::Status print_status;
  absl::Status status = ctx.client.WatchJobs(request, [&](const sched::v1::WatchJobsResponse& r) {
    if (IsTable(args.output)) {
      PrintTableRow(JobTableRow(r.job(), wide, ctx.clock.Now()), widths, ctx.out);
    } else if (print_status.ok()) {
      print_status = PrintDocument(r.job(), args.output, /*document_start=*/true, ctx.out);
    }
    ctx.out.flush();
  });
  SCHED_RETURN_IF_ERROR(print_status);
  return status;
}

absl::Status GetJobs(const GetArgs& args, CommandContext& ctx) {
  const bool wide = args.output == OutputFormat::kWide;
  if (!args.name.empty()) {
    SCHED_ASSIGN_OR_RETURN(Job job, ctx.client.GetJob(args.name));
    if (!IsTable(args.output)) return PrintDocument(job, args.output, false, ctx.out);
    Table table(JobTableHeader(wide));
    table.AddRow(JobTableRow(job, wide, ctx.clock.Now()));
    table.Print(ctx.out);
    return absl::OkStatus();
  }
  sched::v1::ListJobsRequest request;
  for (sched::v1::JobState s : args.states) request.add_states(s);
  request.set_project(args.project);
  SCHED_ASSIGN_OR_RETURN(sched::v1::ListJobsResponse jobs,
                         ctx.client.ListAllJobs(request, args.limit));
  if (!IsTable(args.output)) return PrintDocument(jobs, args.output, false, ctx.out);
  PrintJobTable(jobs.jobs(), wide, ctx.clock.Now(), ctx.out);
  return absl::OkStatus();
}

absl::Status GetNodes(const GetArgs& args, CommandContext& ctx) {
  const bool wide = args.output == OutputFormat::kWide;
  sched::v1::ListNodesResponse nodes;
  if (!args.name.empty()) {
    SCHED_ASSIGN_OR_RETURN(sched::v1::Node node, ctx.client.GetNode(args.name));
    if (!IsTable(args.output)) return PrintDocument(node, args.output, false, ctx.out);
    *nodes.add_nodes() = std::move(node);
  } else {
    SCHED_ASSIGN_OR_RETURN(nodes, ctx.client.ListNodes());
    if (!IsTable(args.output)) return PrintDocument(nodes, args.output, false, ctx.out);
  }
  PrintNodeTable(nodes.nodes(), wide, ctx.clock.Now(), ctx.out);
  return absl::OkStatus();
}

}  // namespace

bool IsTable(OutputFormat format) {
  return format == OutputFormat::kTable || format == OutputFormat::kWide;
}

absl::Status PrintDocument(const google::protobuf::Message& message, OutputFormat format,
                           bool document_start, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    SCHED_ASSIGN_OR_RETURN(std::string json, ToJson(message));
    out << json;
  } else {
    SCHED_ASSIGN_OR_RETURN(std::string yaml, ToYaml(message));
    out << (document_start ? "---\n" : "") << yaml;
  }
  return absl::OkStatus();
}

namespace {

std::string FileName(const std::string& file) { return file == "-" ? "<stdin>" : file; }

// Secrets take their values from this shell, so they are never written in a spec file.
absl::Status FillSecrets(sched::v1::JobSpec& spec, const std::string& file, CommandContext& ctx) {
  for (sched::v1::EnvVar& var : *spec.mutable_env()) {
    if (!var.secret()) continue;
    std::optional<std::string> value = ctx.getenv ? ctx.getenv(var.name()) : std::nullopt;
    if (!value.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(FileName(file), ": secrets: ", var.name(),
                       " is not set in this environment (export it before submitting)"));
    }
    var.set_value(*std::move(value));
  }
  return absl::OkStatus();
}

// The job spec in `file` ("-": stdin); a parse error names the file.
absl::StatusOr<sched::v1::JobSpec> ParseSpec(const std::string& file, const std::string& text,
                                             CommandContext& ctx) {
  absl::StatusOr<sched::v1::JobSpec> spec = ParseJobSpecYaml(text);
  if (!spec.ok()) {
    return absl::Status(spec.status().code(),
                        absl::StrCat(FileName(file), ": ", spec.status().message()));
  }
  SCHED_RETURN_IF_ERROR(FillSecrets(*spec, file, ctx));
  return spec;
}

absl::StatusOr<sched::v1::JobSpec> ReadSpec(const std::string& file, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(std::string text, ReadSpecFile(file, ctx.in));
  return ParseSpec(file, text, ctx);
}

// Submits a pipeline's stages in order, each with the ids of the stages before it in place of
// their names. The request ids derive from one, so a retried submit finds the same jobs.
absl::Status SubmitPipeline(const std::string& file, const std::string& text,
                            const std::string& request_id, CommandContext& ctx) {
  absl::StatusOr<Pipeline> pipeline = ParsePipelineYaml(text);
  if (!pipeline.ok()) {
    return absl::Status(pipeline.status().code(),
                        absl::StrCat(FileName(file), ": ", pipeline.status().message()));
  }
  std::map<std::string, std::string> ids;
  std::vector<std::string> lines;
  for (PipelineStage& stage : pipeline->stages) {
    SCHED_RETURN_IF_ERROR(FillSecrets(stage.spec, file, ctx));
    SCHED_RETURN_IF_ERROR(ResolveStages(stage.spec, ids));
    absl::StatusOr<sched::v1::SubmitJobResponse> response =
        ctx.client.SubmitJob(stage.spec, absl::StrCat(request_id, "/", stage.name));
    if (!response.ok()) {
      for (const std::string& line : lines) ctx.out << line;
      return absl::Status(response.status().code(),
                          absl::StrCat("stage ", stage.name, ": ", response.status().message(),
                                       ids.empty() ? "" : " (the stages above were submitted)"));
    }
    ids[stage.name] = response->job().id();
    lines.push_back(absl::StrCat("  ", stage.name, ": job/", response->job().id(),
                                 response->existing() ? " (existing)" : "", "\n"));
  }
  ctx.out << "pipeline" << (pipeline->name.empty() ? "" : "/" + pipeline->name)
          << " submitted: " << pipeline->stages.size() << " stages\n";
  for (const std::string& line : lines) ctx.out << line;
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSubmit(const SubmitArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(std::string text, ReadSpecFile(args.file, ctx.in));
  const std::string request_id = args.request_id.empty() ? NewUuidV4(ctx.random) : args.request_id;
  if (IsPipelineYaml(text)) return SubmitPipeline(args.file, text, request_id, ctx);
  SCHED_ASSIGN_OR_RETURN(sched::v1::JobSpec spec, ParseSpec(args.file, text, ctx));
  SCHED_ASSIGN_OR_RETURN(sched::v1::SubmitJobResponse response,
                         ctx.client.SubmitJob(spec, request_id));
  if (!response.sweep_id().empty()) {
    ctx.out << "sweep/" << response.sweep_id() << " submitted: " << response.job_ids_size()
            << " jobs" << (response.existing() ? " (existing)" : "") << "\n";
    return absl::OkStatus();
  }
  ctx.out << "job/" << response.job().id() << " submitted"
          << (response.existing() ? " (existing)" : "") << "\n";
  return absl::OkStatus();
}

absl::Status RunEstimate(const EstimateArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(sched::v1::JobSpec spec, ReadSpec(args.file, ctx));
  SCHED_ASSIGN_OR_RETURN(sched::v1::EstimateJobResponse response, ctx.client.EstimateJob(spec));
  if (!IsTable(args.output)) return PrintDocument(response, args.output, false, ctx.out);
  PrintEstimate(response.decision(), ctx.out);
  return absl::OkStatus();
}

absl::Status RunGet(const GetArgs& args, CommandContext& ctx) {
  if (args.kind == ResourceKind::kToken) return RunTokenList({args.name, args.output}, ctx);
  if (args.kind == ResourceKind::kSweep) {
    SCHED_ASSIGN_OR_RETURN(sched::v1::SweepStatus sweep, ctx.client.GetSweep(args.name));
    if (!IsTable(args.output)) return PrintDocument(sweep, args.output, false, ctx.out);
    PrintSweep(sweep, ctx.out);
    return absl::OkStatus();
  }
  if (args.kind == ResourceKind::kNode) return GetNodes(args, ctx);
  if (args.watch) return WatchJobs(args, ctx);
  return GetJobs(args, ctx);
}

absl::Status RunDescribe(const DescribeArgs& args, CommandContext& ctx) {
  if (args.kind == ResourceKind::kJob) {
    SCHED_ASSIGN_OR_RETURN(Job job, ctx.client.GetJob(args.name));
    // What it cost so far, from the ledger; left out when schedd cannot say.
    sched::v1::GetCostReportRequest request;
    *request.mutable_since() = job.create_time();
    request.set_group_by(sched::v1::COST_GROUP_JOB);
    request.set_project(job.spec().project());
    std::optional<sched::v1::CostLine> spent;
    if (absl::StatusOr<sched::v1::CostReport> report = ctx.client.GetCostReport(request);
        report.ok()) {
      spent.emplace();
      for (const sched::v1::CostLine& line : report->lines()) {
        if (line.key() == job.id()) spent = line;
      }
    }
    DescribeJob(job, ctx.clock.Now(), ctx.out, spent);
  } else {
    SCHED_ASSIGN_OR_RETURN(sched::v1::Node node, ctx.client.GetNode(args.name));
    DescribeNode(node, ctx.clock.Now(), ctx.out);
  }
  return absl::OkStatus();
}

absl::Status RunLogs(const LogsArgs& args, CommandContext& ctx) {
  sched::v1::GetJobLogsRequest request;
  request.set_job_id(args.job_id);
  request.set_follow(args.follow);
  request.set_attempt(args.attempt);
  return ctx.client.GetJobLogs(request, [&](const sched::v1::LogChunk& chunk) {
    ctx.out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    ctx.out.flush();
  });
}

absl::Status RunCancel(const CancelArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(Job job, ctx.client.CancelJob(args.job_id, args.reason));
  const bool ended = job.state() == sched::v1::JOB_STATE_CANCELLED;
  ctx.out << "job/" << job.id() << (ended ? " cancelled" : " cancel requested") << "\n";
  return absl::OkStatus();
}

absl::Status RunNodeAction(const NodeActionArgs& args, CommandContext& ctx) {
  absl::StatusOr<sched::v1::Node> node;
  const char* done = "";
  switch (args.action) {
    case NodeAction::kCordon:
      node = ctx.client.Cordon(args.name, /*uncordon=*/false);
      done = "cordoned";
      break;
    case NodeAction::kUncordon:
      node = ctx.client.Cordon(args.name, /*uncordon=*/true);
      done = "uncordoned";
      break;
    case NodeAction::kDrain:
      node = ctx.client.Drain(args.name);
      done = "draining";
      break;
  }
  SCHED_RETURN_IF_ERROR(node.status());
  ctx.out << "node/" << node->name() << " " << done << "\n";
  return absl::OkStatus();
}

absl::Status RunNodeRevoke(const NodeRevokeArgs& args, CommandContext& ctx) {
  SCHED_ASSIGN_OR_RETURN(sched::v1::RevokeNodeResponse revoked, ctx.client.RevokeNode(args.name));
  const uint32_t closed = revoked.streams_closed();
  ctx.out << "node " << (revoked.name().empty() ? args.name : revoked.name()) << " revoked ("
          << closed << " agent " << (closed == 1 ? "stream" : "streams") << " closed)\n";
  return absl::OkStatus();
}

absl::Status RunBackup(const BackupArgs& args, CommandContext& ctx) {
  sched::v1::BackupRequest request;
  request.set_path(args.path);
  request.set_skip_checkpoints(args.skip_checkpoints);
  SCHED_ASSIGN_OR_RETURN(sched::v1::BackupResponse made, ctx.client.Backup(request));
  ctx.out << "backup " << made.path() << ": " << made.jobs() << " jobs, store "
          << FormatBytes(static_cast<int64_t>(made.store_bytes()));
  if (args.skip_checkpoints) {
    ctx.out << ", checkpoints left out";
  } else {
    ctx.out << ", " << made.checkpoint_files() << " checkpoint files ("
            << FormatBytes(static_cast<int64_t>(made.checkpoint_bytes())) << ")";
  }
  ctx.out << absl::StrFormat(", %.1fs\n", made.seconds());
  return absl::OkStatus();
}

}  // namespace sched::client
