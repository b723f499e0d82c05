#include "client/command_line.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/units.h"
#include "server/common/status_macros.h"

namespace sched::client {
namespace {

const std::map<std::string, std::string>& UsageLines() {
  static const auto* lines = new std::map<std::string, std::string>{
      {"",
       "schedctl [--server ADDR] [--timeout DURATION] [--token TOKEN|--token_file PATH] "
       "[--ca_file PATH|--ca_pin sha256:HEX] "
       "submit|estimate|get|describe|logs|cancel|checkpoints|checkpoint|cordon|uncordon|drain|"
       "node|budget|cost|token ..."},
      {"submit", "schedctl submit -f FILE|- [--request-id ID]"},
      {"estimate", "schedctl estimate -f FILE|- [-o json|yaml]"},
      {"get",
       "schedctl get jobs|job [ID]|nodes|node [NAME]|tokens|token [ID]|sweep ID "
       "[-o wide|json|yaml] [-w] [--state STATE]... [--project P] [--limit N]"},
      {"describe", "schedctl describe job ID | describe node NAME"},
      {"logs", "schedctl logs [-f] ID [--attempt N]"},
      {"cancel", "schedctl cancel ID [--reason TEXT]"},
      {"checkpoints", "schedctl checkpoints JOB [-o json|yaml]"},
      {"checkpoint", "schedctl checkpoint get JOB [SEQ] [--to DIR]"},
      {"cordon", "schedctl cordon NODE"},
      {"uncordon", "schedctl uncordon NODE"},
      {"drain", "schedctl drain NODE"},
      {"node", "schedctl node revoke NODE"},
      {"admin", "schedctl admin backup PATH [--skip-checkpoints]"},
      {"budget",
       "schedctl budget set PROJECT --monthly DOLLARS [--alerts 50,80,100] [--soft] | "
       "budget get [PROJECT] [-o json|yaml]"},
      {"cost",
       "schedctl cost report [--by project|provider|job|node] [--since 7d|DATE] [--project P] "
       "[-o json|yaml] | cost advise [--days N] [--node NAME] [--all] [-o json|yaml]"},
      {"token",
       "schedctl token create --role admin|member|viewer|agent [--ttl DURATION] [--uses N] "
       "[--project P]... [--label KEY=VALUE]... [--description TEXT] [-o json|yaml] | "
       "token list [-o json|yaml] | token revoke ID"},
  };
  return *lines;
}

ParsedCommandLine UsageError(absl::string_view command, absl::string_view what, std::ostream& err) {
  err << "error: " << what << "\nusage: " << UsageLines().at(std::string(command))
      << "\nRun 'schedctl" << (command.empty() ? "" : " ") << command << " --help' for more.\n";
  ParsedCommandLine result;
  result.exit_code = kExitUsage;
  return result;
}

// The first word that is neither an option nor a global option's value: the command the user
// meant, for a better message than CLI11's when it is not one.
std::string CommandWord(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--server" || arg == "--timeout" || arg == "--token" || arg == "--token_file" ||
        arg == "--token-file" || arg == "--ca_file" || arg == "--ca-file" || arg == "--ca_pin" ||
        arg == "--ca-pin") {
      ++i;
    } else if (!absl::StartsWith(arg, "-")) {
      return std::string(arg);
    }
  }
  return "";
}

// `get` lists tokens too; `describe` does not.
absl::StatusOr<ResourceKind> ParseKind(const std::string& resource, bool tokens) {
  const std::string r = absl::AsciiStrToLower(resource);
  if (r == "job" || r == "jobs") return ResourceKind::kJob;
  if (r == "node" || r == "nodes") return ResourceKind::kNode;
  if (tokens && (r == "token" || r == "tokens")) return ResourceKind::kToken;
  if (tokens && r == "sweep") return ResourceKind::kSweep;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown resource \"", resource, "\" (expected ",
      tokens ? "jobs, nodes, tokens or sweep" : "jobs or nodes", ")"));
}

absl::StatusOr<OutputFormat> ParseOutput(const std::string& output) {
  if (output.empty()) return OutputFormat::kTable;
  if (output == "wide") return OutputFormat::kWide;
  if (output == "json") return OutputFormat::kJson;
  if (output == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(
      absl::StrCat("-o: unknown output format \"", output, "\" (expected wide, json or yaml)"));
}

// For commands that print a table or a document but have no wide table.
absl::StatusOr<OutputFormat> ParseDocumentOutput(const std::string& output) {
  SCHED_ASSIGN_OR_RETURN(OutputFormat format, ParseOutput(output));
  if (format == OutputFormat::kWide) return absl::InvalidArgumentError("-o: expected json or yaml");
  return format;
}

// "running", "RUNNING" and "JOB_STATE_RUNNING" alike.
absl::StatusOr<sched::v1::JobState> ParseJobState(const std::string& text) {
  std::string name = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(name, "JOB_STATE_")) name = absl::StrCat("JOB_STATE_", name);
  sched::v1::JobState state;
  if (!sched::v1::JobState_Parse(name, &state) || state == sched::v1::JOB_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state: unknown job state \"", text,
                     "\" (expected pending, assigned, running, succeeded, failed, cancelled or "
                     "stopped_early)"));
  }
  return state;
}

// "30s", "1m30s", "500ms"; a bare number is seconds.
absl::StatusOr<absl::Duration> ParseTimeout(const std::string& text) {
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    d = absl::ZeroDuration();
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: expected a positive duration such as 10s, got \"", text, "\""));
  }
  return d;
}

// The values CLI11 writes into, before they are checked and turned into CommandArgs.
struct RawArgs {
  std::string server;
  std::string timeout = "10s";
  std::string token;
  std::string token_file;
  std::string ca_file;
  std::string ca_pin;
  SubmitArgs submit;
  std::string resource;
  std::string name;
  std::string output;
  bool watch = false;
  std::vector<std::string> states;
  std::string project;
  int64_t limit = 0;
  LogsArgs logs;
  CancelArgs cancel;
  std::string node;
  BudgetSetArgs budget_set;
  std::string budget_get_project;
  CostReportArgs cost_report;
  CostAdviceArgs cost_advise;
  EstimateArgs estimate;
  std::string checkpoints_job;
  CheckpointGetArgs checkpoint_get;
  std::string checkpoint_seq;
  std::string token_role;
  std::string token_ttl;
  int64_t token_uses = 0;
  std::vector<std::string> token_projects;
  std::vector<std::string> token_labels;
  std::string token_description;
  TokenRevokeArgs token_revoke;
  BackupArgs backup;
};

absl::StatusOr<GetArgs> MakeGetArgs(const RawArgs& raw, bool has_limit) {
  GetArgs args;
  SCHED_ASSIGN_OR_RETURN(args.kind, ParseKind(raw.resource, /*tokens=*/true));
  SCHED_ASSIGN_OR_RETURN(args.output, ParseOutput(raw.output));
  args.name = raw.name;
  args.watch = raw.watch;
  args.project = raw.project;
  if (has_limit) args.limit = static_cast<uint32_t>(raw.limit);
  for (const std::string& s : raw.states) {
    SCHED_ASSIGN_OR_RETURN(sched::v1::JobState state, ParseJobState(s));
    args.states.push_back(state);
  }
  if (args.kind != ResourceKind::kJob &&
      (args.watch || has_limit || !args.states.empty() || !args.project.empty())) {
    return absl::InvalidArgumentError("-w, --state, --project and --limit apply to jobs only");
  }
  if (args.kind == ResourceKind::kSweep && args.name.empty()) {
    return absl::InvalidArgumentError("a sweep ID is required (submit prints it)");
  }
  if (args.kind == ResourceKind::kSweep && args.output == OutputFormat::kWide) {
    return absl::InvalidArgumentError("-o: expected json or yaml");
  }
  if (args.watch && has_limit) {
    return absl::InvalidArgumentError("--limit cannot be used with -w");
  }
  if (!args.name.empty() && (has_limit || !args.states.empty() || !args.project.empty())) {
    return absl::InvalidArgumentError("--state, --project and --limit apply to lists only");
  }
  return args;
}

absl::StatusOr<DescribeArgs> MakeDescribeArgs(const RawArgs& raw) {
  DescribeArgs args;
  SCHED_ASSIGN_OR_RETURN(args.kind, ParseKind(raw.resource, /*tokens=*/false));
  args.name = raw.name;
  if (args.name.empty()) {
    return absl::InvalidArgumentError(args.kind == ResourceKind::kJob ? "a job ID is required"
                                                                      : "a node NAME is required");
  }
  return args;
}

// SEQ in decimal, from 1; left out, 0 (the newest).
absl::StatusOr<CheckpointGetArgs> MakeCheckpointGetArgs(const RawArgs& raw) {
  CheckpointGetArgs args = raw.checkpoint_get;
  if (!raw.checkpoint_seq.empty() &&
      (!absl::SimpleAtoi(raw.checkpoint_seq, &args.seq) || args.seq == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SEQ: expected a checkpoint's number, 1 or more, got \"", raw.checkpoint_seq,
                     "\" (leave SEQ out for the newest)"));
  }
  return args;
}

// --label KEY=VALUE, each key once.
absl::Status AddLabels(const std::vector<std::string>& labels,
                       google::protobuf::Map<std::string, std::string>& out) {
  for (const std::string& label : labels) {
    const size_t eq = label.find('=');
    if (eq == 0 || eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label: expected KEY=VALUE, got \"", label, "\""));
    }
    if (!out.insert({label.substr(0, eq), label.substr(eq + 1)}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label: ", label.substr(0, eq), " is given twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenCreateArgs> MakeTokenCreateArgs(const RawArgs& raw) {
  TokenCreateArgs args;
  sched::v1::CreateTokenRequest& request = args.request;
  SCHED_ASSIGN_OR_RETURN(sched::v1::Role role, ParseRole(raw.token_role));
  request.set_role(role);
  if (!raw.token_ttl.empty()) {
    const std::optional<absl::Duration> ttl = ParsePositiveDuration(raw.token_ttl);
    if (!ttl) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ttl: expected a positive duration such as 1h, 90m or 30d, got \"",
                       raw.token_ttl, "\" (leave --ttl out for a token that does not expire)"));
    }
    const int64_t seconds = absl::ToInt64Seconds(*ttl);
    request.mutable_ttl()->set_seconds(seconds);
    request.mutable_ttl()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(*ttl - absl::Seconds(seconds))));
  }
  request.set_uses(raw.token_uses);
  for (const std::string& p : raw.token_projects) request.add_projects(p);
  SCHED_RETURN_IF_ERROR(AddLabels(raw.token_labels, *request.mutable_labels()));
  request.set_description(raw.token_description);
  SCHED_ASSIGN_OR_RETURN(args.output, ParseDocumentOutput(raw.output));
  return args;
}

}  // namespace

absl::StatusOr<std::string> ParseCaPin(absl::string_view text, absl::string_view source) {
  constexpr absl::string_view kPrefix = "sha256:";
  const std::string pin = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  const absl::string_view hex = absl::string_view(pin).substr(std::min(pin.size(), kPrefix.size()));
  if (!absl::StartsWith(pin, kPrefix) || hex.size() != 64 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected sha256: and 64 hex digits, got \"", text, "\""));
  }
  return pin;
}

ParsedCommandLine ParseCommandLine(int argc, const char* const* argv, std::ostream& out,
                                   std::ostream& err) {
  RawArgs raw;
  CLI::App app("schedctl: submit and watch jobs on a sched cluster", "schedctl");
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--server", raw.server,
                 absl::StrCat("schedd address (default: $SCHED_SERVER, else 127.0.0.1:7070)"));
  app.add_option("--timeout", raw.timeout, "deadline of each request, e.g. 10s, 500ms")
      ->capture_default_str();
  app.add_option("--token", raw.token,
                 "API token, <id>.<secret>, sent with every request (default: $SCHED_TOKEN)");
  app.add_option("--token_file,--token-file", raw.token_file,
                 "file whose first line is the API token (default: $SCHED_TOKEN_FILE)");
  app.add_option("--ca_file,--ca-file", raw.ca_file,
                 "schedd's CA certificates (PEM, <data_dir>/tls/ca.crt there): connect over TLS "
                 "and trust them (default: $SCHED_CA_FILE)");
  app.add_option("--ca_pin,--ca-pin", raw.ca_pin,
                 "sha256:<hex> of schedd's CA certificate (token create prints it): connect over "
                 "TLS, trusting the certificate schedd presents with this pin (default: "
                 "$SCHED_CA_PIN)");

  CLI::App* submit = app.add_subcommand("submit", "Queue the job described in a YAML file");
  submit->add_option("-f,--filename", raw.submit.file, "job.yaml, or - for stdin")->required();
  submit->add_option("--request-id", raw.submit.request_id,
                     "idempotency key; a retry with the same key makes no second job "
                     "(default: a random UUID)");

  CLI::App* estimate = app.add_subcommand(
      "estimate", "Where a job would go now, when it would start and finish, what it would cost");
  estimate->add_option("-f,--filename", raw.estimate.file, "job.yaml, or - for stdin")->required();
  estimate->add_option("-o,--output", raw.output, "json or yaml");

  CLI::App* get = app.add_subcommand("get", "List jobs, nodes or tokens, or show one");
  get->add_option("resource", raw.resource, "jobs|job|nodes|node|tokens|token|sweep")
      ->required();
  get->add_option("name", raw.name, "job ID (or unique prefix), node name or token ID");
  get->add_option("-o,--output", raw.output, "wide, json or yaml");
  get->add_flag("-w,--watch", raw.watch, "print a row for each change until interrupted");
  get->add_option("--state", raw.states, "only jobs in this state (repeatable, or a,b)")
      ->delimiter(',')
      ->allow_extra_args(false);
  get->add_option("--project", raw.project, "only jobs of this project");
  CLI::Option* limit =
      get->add_option("--limit", raw.limit, "stop after N jobs")
          ->check(CLI::Range(int64_t{1}, int64_t{std::numeric_limits<uint32_t>::max()}));

  CLI::App* describe = app.add_subcommand("describe", "Show every detail of a job or node");
  describe->add_option("resource", raw.resource, "job|node")->required();
  describe->add_option("name", raw.name, "job ID (or unique prefix) or node name");

  CLI::App* logs = app.add_subcommand("logs", "Print a job's output");
  logs->add_option("id", raw.logs.job_id, "job ID or unique prefix")->required();
  logs->add_flag("-f,--follow", raw.logs.follow, "keep printing until the job has ended");
  logs->add_option("--attempt", raw.logs.attempt, "only this attempt (default: all)");

  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a job");
  cancel->add_option("id", raw.cancel.job_id, "job ID or unique prefix")->required();
  cancel->add_option("--reason", raw.cancel.reason, "recorded in the job's message");

  CLI::App* checkpoints = app.add_subcommand("checkpoints", "List a job's checkpoints");
  checkpoints->add_option("job", raw.checkpoints_job, "job ID or unique prefix")->required();
  checkpoints->add_option("-o,--output", raw.output, "json or yaml");

  CLI::App* checkpoint = app.add_subcommand("checkpoint", "Download a job's checkpoint");
  checkpoint->require_subcommand(1);
  CLI::App* checkpoint_get =
      checkpoint->add_subcommand("get", "Download a checkpoint into DIR/<its name>");
  checkpoint_get->add_option("job", raw.checkpoint_get.job_id, "job ID or unique prefix")
      ->required();
  checkpoint_get
      ->add_option("seq", raw.checkpoint_seq,
                   "SEQ as `schedctl checkpoints JOB` lists it (default: the newest)")
      ->type_name("UINT");
  checkpoint_get->add_option("--to", raw.checkpoint_get.to, "the folder to put it in")
      ->capture_default_str();

  std::map<CLI::App*, NodeAction> node_actions;
  for (auto [name, action, help] :
       {std::tuple{"cordon", NodeAction::kCordon, "Send no new work to a node"},
        std::tuple{"uncordon", NodeAction::kUncordon, "Send new work to a node again"},
        std::tuple{"drain", NodeAction::kDrain, "Cordon a node and let its running jobs finish"}}) {
    CLI::App* sub = app.add_subcommand(name, help);
    sub->add_option("node", raw.node, "node name")->required();
    node_actions[sub] = action;
  }
  CLI::App* node = app.add_subcommand("node", "Revoke a node");
  node->require_subcommand(1);
  CLI::App* node_revoke = node->add_subcommand(
      "revoke", "Cut a node off now: close its agent's stream, refuse its certificates");
  node_revoke->add_option("node", raw.node, "node name")->required();
  CLI::App* admin = app.add_subcommand("admin", "Look after schedd itself");
  admin->require_subcommand(1);
  CLI::App* admin_backup = admin->add_subcommand(
      "backup",
      "Copy schedd's state, while it runs, into a new folder on schedd's machine: a data folder "
      "schedd --data_dir can start from");
  admin_backup->add_option("path", raw.backup.path, "a folder that does not exist yet")
      ->required();
  admin_backup->add_flag("--skip-checkpoints", raw.backup.skip_checkpoints,
                         "leave the checkpoint chunks out");

  CLI::App* budget = app.add_subcommand("budget", "Set or show project budgets");
  budget->require_subcommand(1);
  CLI::App* budget_set = budget->add_subcommand("set", "Set a project's monthly budget");
  budget_set->add_option("project", raw.budget_set.project, "project name")->required();
  budget_set->add_option("--monthly", raw.budget_set.monthly_limit, "dollars per calendar month")
      ->required()
      ->check(CLI::NonNegativeNumber);
  budget_set
      ->add_option("--alerts", raw.budget_set.alert_percents,
                   "alert thresholds in percent, e.g. 50,80,100")
      ->delimiter(',');
  budget_set->add_flag("--soft", raw.budget_set.soft,
                       "alert only; never hold work back (default: a hard cap)");
  CLI::App* budget_get = budget->add_subcommand("get", "Show budgets and this month's spend");
  budget_get->add_option("project", raw.budget_get_project, "project (default: all)");
  budget_get->add_option("-o,--output", raw.output, "json or yaml");

  CLI::App* cost = app.add_subcommand("cost", "What work cost");
  cost->require_subcommand(1);
  CLI::App* cost_report = cost->add_subcommand("report", "Spending grouped, since a time");
  cost_report->add_option("--by", raw.cost_report.by, "project, provider, job or node")
      ->capture_default_str();
  cost_report->add_option("--since", raw.cost_report.since,
                          "7d, 12h, 2026-11-01 or an RFC 3339 time (default: this month)");
  cost_report->add_option("--project", raw.cost_report.project, "only this project");
  cost_report->add_option("-o,--output", raw.output, "json or yaml");
  CLI::App* cost_advise = cost->add_subcommand(
      "advise", "What upgrading a local machine would have saved in cloud spend");
  cost_advise->add_option("--days", raw.cost_advise.days, "the window: the last N days")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));
  cost_advise->add_option("--node", raw.cost_advise.node,
                          "the local machine (default: the one with the most GPU memory)");
  cost_advise->add_flag("--all", raw.cost_advise.all,
                        "also upgrades another one beats (same jobs or more, cheaper, sooner)");
  cost_advise->add_option("-o,--output", raw.output, "json or yaml");

  CLI::App* token = app.add_subcommand("token", "Make, list and revoke API tokens");
  token->require_subcommand(1);
  CLI::App* token_create =
      token->add_subcommand("create", "Make a token; prints it, the only time it is shown");
  token_create->add_option("--role", raw.token_role, "admin, member, viewer or agent")->required();
  token_create->add_option("--ttl", raw.token_ttl,
                           "expire after this long, e.g. 1h, 90m, 30d (default: never)");
  token_create
      ->add_option("--uses", raw.token_uses, "agent tokens: how many joins (default: no limit)")
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
  token_create
      ->add_option("--project", raw.token_projects,
                   "members and viewers: a project it acts in (repeatable, or a,b)")
      ->delimiter(',')
      ->allow_extra_args(false);
  token_create
      ->add_option("--label", raw.token_labels,
                   "agent tokens: a label KEY=VALUE for the node that joins (repeatable)")
      ->allow_extra_args(false);
  token_create->add_option("--description", raw.token_description, "what it is for");
  token_create->add_option("-o,--output", raw.output, "json or yaml");
  CLI::App* token_list = token->add_subcommand("list", "List every token, without secrets");
  token_list->add_option("-o,--output", raw.output, "json or yaml");
  CLI::App* token_revoke =
      token->add_subcommand("revoke", "Cut a token off; calls that present it fail from now");
  token_revoke->add_option("id", raw.token_revoke.id, "token ID")->required();

  std::string command;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      ParsedCommandLine help;
      help.exit_code = app.exit(e, out, err);
      return help;
    }
    const auto parsed = app.get_subcommands();
    if (!parsed.empty()) return UsageError(parsed.front()->get_name(), e.what(), err);
    const std::string word = CommandWord(argc, argv);
    if (!word.empty() && UsageLines().count(word) == 0) {
      return UsageError("", absl::StrCat("unknown command \"", word, "\""), err);
    }
    return UsageError("", e.what(), err);
  }
  CLI::App* sub = app.get_subcommands().front();
  command = sub->get_name();

  Invocation inv;
  if (!raw.server.empty()) inv.server = raw.server;
  if (!raw.token.empty()) inv.token = raw.token;
  if (!raw.token_file.empty()) inv.token_file = raw.token_file;
  if (!raw.ca_file.empty()) inv.ca_file = raw.ca_file;
  if (!raw.ca_pin.empty()) {
    absl::StatusOr<std::string> pin = ParseCaPin(raw.ca_pin, "--ca_pin");
    if (!pin.ok()) return UsageError(command, pin.status().message(), err);
    inv.ca_pin = *std::move(pin);
  }
  absl::StatusOr<absl::Duration> timeout = ParseTimeout(raw.timeout);
  if (!timeout.ok()) return UsageError(command, timeout.status().message(), err);
  inv.timeout = *timeout;

  absl::Status status;
  if (sub == submit) {
    inv.command = raw.submit;
  } else if (sub == estimate) {
    absl::StatusOr<OutputFormat> output = ParseDocumentOutput(raw.output);
    status = output.status();
    if (status.ok()) inv.command = EstimateArgs{raw.estimate.file, *output};
  } else if (sub == get) {
    absl::StatusOr<GetArgs> args = MakeGetArgs(raw, limit->count() > 0);
    status = args.status();
    if (args.ok()) inv.command = *std::move(args);
  } else if (sub == describe) {
    absl::StatusOr<DescribeArgs> args = MakeDescribeArgs(raw);
    status = args.status();
    if (args.ok()) inv.command = *std::move(args);
  } else if (sub == logs) {
    inv.command = raw.logs;
  } else if (sub == cancel) {
    inv.command = raw.cancel;
  } else if (sub == checkpoints) {
    absl::StatusOr<OutputFormat> output = ParseDocumentOutput(raw.output);
    status = output.status();
    if (status.ok()) inv.command = CheckpointListArgs{raw.checkpoints_job, *output};
  } else if (sub == checkpoint) {
    absl::StatusOr<CheckpointGetArgs> args = MakeCheckpointGetArgs(raw);
    status = args.status();
    if (args.ok()) inv.command = *std::move(args);
  } else if (sub == token && token_create->parsed()) {
    absl::StatusOr<TokenCreateArgs> args = MakeTokenCreateArgs(raw);
    status = args.status();
    if (args.ok()) inv.command = *std::move(args);
  } else if (sub == token && token_list->parsed()) {
    absl::StatusOr<OutputFormat> output = ParseDocumentOutput(raw.output);
    status = output.status();
    if (status.ok()) inv.command = TokenListArgs{"", *output};
  } else if (sub == token) {
    inv.command = raw.token_revoke;
  } else if (sub == node) {
    inv.command = NodeRevokeArgs{raw.node};
  } else if (sub == admin) {
    BackupArgs args = raw.backup;
    // A relative path means this folder, when schedd runs on this machine.
    if (!args.path.empty() && args.path.front() != '/') {
      std::error_code ec;
      const std::filesystem::path absolute = std::filesystem::absolute(args.path, ec);
      if (!ec) args.path = absolute.lexically_normal().string();
    }
    inv.command = std::move(args);
  } else if (sub == budget || sub == cost) {
    absl::StatusOr<OutputFormat> output = ParseDocumentOutput(raw.output);
    status = output.status();
    if (status.ok() && budget_set->parsed()) {
      inv.command = raw.budget_set;
    } else if (status.ok() && budget_get->parsed()) {
      inv.command = BudgetGetArgs{raw.budget_get_project, *output};
    } else if (status.ok() && cost_advise->parsed()) {
      CostAdviceArgs args = raw.cost_advise;
      args.output = *output;
      inv.command = std::move(args);
    } else if (status.ok()) {
      CostReportArgs args = raw.cost_report;
      args.output = *output;
      inv.command = std::move(args);
    }
  } else {
    inv.command = NodeActionArgs{node_actions.at(sub), raw.node};
  }
  if (!status.ok()) return UsageError(command, status.message(), err);
  ParsedCommandLine result;
  result.invocation = std::move(inv);
  return result;
}

}  // namespace sched::client
