#include "client/command_line.h"

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

struct Parsed {
  ParsedCommandLine result;
  std::string out;
  std::string err;
};

Parsed Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "schedctl");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  Parsed p;
  p.result = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), out, err);
  p.out = out.str();
  p.err = err.str();
  return p;
}

TEST(ParseCommandLine, GetJobsWithEveryOption) {
  Parsed p = Parse({"get", "jobs", "-o", "wide", "--state", "running", "--state",
                    "PENDING,job_state_failed", "--project", "llm", "--limit", "7", "--server",
                    "h:1", "--timeout", "1500ms"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  const Invocation& inv = *p.result.invocation;
  EXPECT_EQ(inv.server, "h:1");
  EXPECT_EQ(inv.timeout, absl::Milliseconds(1500));
  const GetArgs& get = std::get<GetArgs>(inv.command);
  EXPECT_EQ(get.kind, ResourceKind::kJob);
  EXPECT_EQ(get.output, OutputFormat::kWide);
  EXPECT_THAT(get.states, ElementsAre(sched::v1::JOB_STATE_RUNNING, sched::v1::JOB_STATE_PENDING,
                                      sched::v1::JOB_STATE_FAILED));
  EXPECT_EQ(get.project, "llm");
  EXPECT_EQ(get.limit, 7u);
  EXPECT_FALSE(get.watch);
  EXPECT_EQ(get.name, "");
}

TEST(ParseCommandLine, GlobalOptionsBeforeTheCommandAndDefaults) {
  Parsed p = Parse({"--server", "h:2", "get", "node", "ws1", "-o", "yaml"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  EXPECT_EQ(p.result.invocation->server, "h:2");
  EXPECT_EQ(p.result.invocation->timeout, absl::Seconds(10));
  const GetArgs& get = std::get<GetArgs>(p.result.invocation->command);
  EXPECT_EQ(get.kind, ResourceKind::kNode);
  EXPECT_EQ(get.name, "ws1");
  EXPECT_EQ(get.output, OutputFormat::kYaml);
  EXPECT_EQ(get.limit, std::nullopt);

  Parsed no_server = Parse({"logs", "-f", "abc", "--attempt", "2"});
  ASSERT_TRUE(no_server.result.invocation) << no_server.err;
  EXPECT_EQ(no_server.result.invocation->server, std::nullopt);
  const LogsArgs& logs = std::get<LogsArgs>(no_server.result.invocation->command);
  EXPECT_EQ(logs.job_id, "abc");
  EXPECT_TRUE(logs.follow);
  EXPECT_EQ(logs.attempt, 2u);
}

TEST(ParseCommandLine, OtherCommands) {
  Parsed submit = Parse({"submit", "-f", "-", "--request-id", "r1"});
  ASSERT_TRUE(submit.result.invocation) << submit.err;
  EXPECT_EQ(std::get<SubmitArgs>(submit.result.invocation->command).file, "-");
  EXPECT_EQ(std::get<SubmitArgs>(submit.result.invocation->command).request_id, "r1");

  Parsed cancel = Parse({"cancel", "ab12", "--reason", "wrong data"});
  ASSERT_TRUE(cancel.result.invocation) << cancel.err;
  EXPECT_EQ(std::get<CancelArgs>(cancel.result.invocation->command).job_id, "ab12");
  EXPECT_EQ(std::get<CancelArgs>(cancel.result.invocation->command).reason, "wrong data");

  Parsed drain = Parse({"drain", "ws1"});
  ASSERT_TRUE(drain.result.invocation) << drain.err;
  EXPECT_EQ(std::get<NodeActionArgs>(drain.result.invocation->command).action, NodeAction::kDrain);
  EXPECT_EQ(std::get<NodeActionArgs>(drain.result.invocation->command).name, "ws1");

  Parsed uncordon = Parse({"uncordon", "ws2"});
  ASSERT_TRUE(uncordon.result.invocation) << uncordon.err;
  EXPECT_EQ(std::get<NodeActionArgs>(uncordon.result.invocation->command).action,
            NodeAction::kUncordon);

  Parsed describe = Parse({"describe", "job", "ab"});
  ASSERT_TRUE(describe.result.invocation) << describe.err;
  EXPECT_EQ(std::get<DescribeArgs>(describe.result.invocation->command).kind, ResourceKind::kJob);
  EXPECT_EQ(std::get<DescribeArgs>(describe.result.invocation->command).name, "ab");
}

TEST(ParseCommandLine, CostAdvise) {
  Parsed p = Parse({"cost", "advise", "--days", "90", "--node", "ws1", "--all", "-o", "json"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  const CostAdviceArgs& args = std::get<CostAdviceArgs>(p.result.invocation->command);
  EXPECT_EQ(args.days, 90u);
  EXPECT_EQ(args.node, "ws1");
  EXPECT_TRUE(args.all);
  EXPECT_EQ(args.output, OutputFormat::kJson);

  Parsed defaults = Parse({"cost", "advise"});
  ASSERT_TRUE(defaults.result.invocation) << defaults.err;
  const CostAdviceArgs& d = std::get<CostAdviceArgs>(defaults.result.invocation->command);
  EXPECT_EQ(d.days, 30u);
  EXPECT_EQ(d.node, "");
  EXPECT_FALSE(d.all);
  EXPECT_EQ(d.output, OutputFormat::kTable);
}

TEST(ParseCommandLine, Checkpoints) {
  Parsed list = Parse({"checkpoints", "776b", "-o", "yaml"});
  ASSERT_TRUE(list.result.invocation) << list.err;
  const CheckpointListArgs& l = std::get<CheckpointListArgs>(list.result.invocation->command);
  EXPECT_EQ(l.job_id, "776b");
  EXPECT_EQ(l.output, OutputFormat::kYaml);
  Parsed table = Parse({"checkpoints", "776b"});
  ASSERT_TRUE(table.result.invocation) << table.err;
  EXPECT_EQ(std::get<CheckpointListArgs>(table.result.invocation->command).output,
            OutputFormat::kTable);

  Parsed get = Parse({"checkpoint", "get", "776b", "12", "--to", "/tmp/ckpt"});
  ASSERT_TRUE(get.result.invocation) << get.err;
  const CheckpointGetArgs& g = std::get<CheckpointGetArgs>(get.result.invocation->command);
  EXPECT_EQ(g.job_id, "776b");
  EXPECT_EQ(g.seq, 12u);
  EXPECT_EQ(g.to, "/tmp/ckpt");

  Parsed newest = Parse({"checkpoint", "get", "776b"});
  ASSERT_TRUE(newest.result.invocation) << newest.err;
  const CheckpointGetArgs& n = std::get<CheckpointGetArgs>(newest.result.invocation->command);
  EXPECT_EQ(n.seq, 0u);
  EXPECT_EQ(n.to, ".");
}

TEST(ParseCommandLine, TokenCreateWithEveryOption) {
  Parsed p = Parse({"token", "create", "--role", "Member", "--ttl", "30d", "--project", "llm",
                    "--project", "cv,nlp", "--description", "ci runner", "-o", "yaml"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  const TokenCreateArgs& args = std::get<TokenCreateArgs>(p.result.invocation->command);
  EXPECT_EQ(args.request.role(), sched::v1::ROLE_MEMBER);
  EXPECT_EQ(args.request.ttl().seconds(), 30 * 24 * 3600);
  EXPECT_EQ(args.request.ttl().nanos(), 0);
  EXPECT_THAT(args.request.projects(), ElementsAre("llm", "cv", "nlp"));
  EXPECT_EQ(args.request.description(), "ci runner");
  EXPECT_EQ(args.request.uses(), 0);
  EXPECT_TRUE(args.request.labels().empty());
  EXPECT_EQ(args.output, OutputFormat::kYaml);

  Parsed agent = Parse({"token", "create", "--role", "agent", "--uses", "3", "--label",
                        "zone=eu-west", "--label", "gpu=rtx4090", "--label", "empty="});
  ASSERT_TRUE(agent.result.invocation) << agent.err;
  const sched::v1::CreateTokenRequest& request =
      std::get<TokenCreateArgs>(agent.result.invocation->command).request;
  EXPECT_EQ(request.role(), sched::v1::ROLE_AGENT);
  EXPECT_FALSE(request.has_ttl());
  EXPECT_EQ(request.uses(), 3);
  ASSERT_EQ(request.labels().size(), 3u);
  EXPECT_EQ(request.labels().at("zone"), "eu-west");
  EXPECT_EQ(request.labels().at("gpu"), "rtx4090");
  EXPECT_EQ(request.labels().at("empty"), "");
}

TEST(ParseCommandLine, TokenListRevokeAndGetTokens) {
  Parsed list = Parse({"token", "list", "-o", "json"});
  ASSERT_TRUE(list.result.invocation) << list.err;
  EXPECT_EQ(std::get<TokenListArgs>(list.result.invocation->command).id, "");
  EXPECT_EQ(std::get<TokenListArgs>(list.result.invocation->command).output, OutputFormat::kJson);

  Parsed revoke = Parse({"token", "revoke", "3f9c0a1b2c3d4e5f"});
  ASSERT_TRUE(revoke.result.invocation) << revoke.err;
  EXPECT_EQ(std::get<TokenRevokeArgs>(revoke.result.invocation->command).id, "3f9c0a1b2c3d4e5f");

  Parsed get = Parse({"get", "token", "3f9c0a1b2c3d4e5f", "-o", "yaml"});
  ASSERT_TRUE(get.result.invocation) << get.err;
  const GetArgs& g = std::get<GetArgs>(get.result.invocation->command);
  EXPECT_EQ(g.kind, ResourceKind::kToken);
  EXPECT_EQ(g.name, "3f9c0a1b2c3d4e5f");
  EXPECT_EQ(g.output, OutputFormat::kYaml);
}

TEST(ParseCommandLine, TokenOptionsBeforeOrAfterTheCommand) {
  Parsed p = Parse({"--token", "abc.def", "get", "jobs", "--token_file", "/etc/sched/token"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  EXPECT_EQ(p.result.invocation->token, "abc.def");
  EXPECT_EQ(p.result.invocation->token_file, "/etc/sched/token");

  Parsed dashed = Parse({"get", "nodes", "--token-file", "t"});
  ASSERT_TRUE(dashed.result.invocation) << dashed.err;
  EXPECT_EQ(dashed.result.invocation->token, std::nullopt);
  EXPECT_EQ(dashed.result.invocation->token_file, "t");

  Parsed unknown = Parse({"--token", "abc.def", "frobnicate"});
  EXPECT_EQ(unknown.result.exit_code, 2);
  EXPECT_THAT(unknown.err, StartsWith("error: unknown command \"frobnicate\""));
}

TEST(ParseCommandLine, CaFileAndPinBeforeOrAfterTheCommand) {
  const std::string pin = "sha256:" + std::string(64, 'a');
  Parsed p = Parse({"--ca_file", "/etc/sched/ca.crt", "get", "jobs", "--ca_pin", pin});
  ASSERT_TRUE(p.result.invocation) << p.err;
  EXPECT_EQ(p.result.invocation->ca_file, "/etc/sched/ca.crt");
  EXPECT_EQ(p.result.invocation->ca_pin, pin);

  // Upper case is taken and kept as schedd prints pins: lower case.
  Parsed dashed =
      Parse({"get", "nodes", "--ca-file", "ca.pem", "--ca-pin", "SHA256:" + std::string(64, 'F')});
  ASSERT_TRUE(dashed.result.invocation) << dashed.err;
  EXPECT_EQ(dashed.result.invocation->ca_file, "ca.pem");
  EXPECT_EQ(dashed.result.invocation->ca_pin, "sha256:" + std::string(64, 'f'));

  Parsed none = Parse({"get", "nodes"});
  ASSERT_TRUE(none.result.invocation) << none.err;
  EXPECT_EQ(none.result.invocation->ca_file, std::nullopt);
  EXPECT_EQ(none.result.invocation->ca_pin, std::nullopt);

  Parsed unknown = Parse({"--ca_pin", pin, "frobnicate"});
  EXPECT_EQ(unknown.result.exit_code, 2);
  EXPECT_THAT(unknown.err, StartsWith("error: unknown command \"frobnicate\""));
}

TEST(ParseCaPin, TakesSha256AndSixtyFourHexDigitsOnly) {
  const std::string hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF";
  absl::StatusOr<std::string> pin = ParseCaPin(" sha256:" + hex + "\n", "$SCHED_CA_PIN");
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ(*pin, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  const std::vector<std::string> bad_pins = {"",
                                             "sha256:",
                                             hex,
                                             "sha1:" + hex,
                                             "sha256:" + hex.substr(1),
                                             "sha256:" + hex + "0",
                                             "sha256:" + hex.substr(1) + "g"};
  for (const std::string& bad : bad_pins) {
    absl::StatusOr<std::string> refused = ParseCaPin(bad, "$SCHED_CA_PIN");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(refused.status().message(),
              "$SCHED_CA_PIN: expected sha256: and 64 hex digits, got \"" + bad + "\"");
  }
}

TEST(ParseCommandLine, AdminBackup) {
  Parsed p = Parse({"admin", "backup", "/var/backups/s1", "--skip-checkpoints"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  const BackupArgs& args = std::get<BackupArgs>(p.result.invocation->command);
  EXPECT_EQ(args.path, "/var/backups/s1");
  EXPECT_TRUE(args.skip_checkpoints);
  // A relative path is this folder's, as schedd on this machine sees it.
  Parsed rel = Parse({"admin", "backup", "copies/../b2"});
  ASSERT_TRUE(rel.result.invocation) << rel.err;
  const BackupArgs& made = std::get<BackupArgs>(rel.result.invocation->command);
  EXPECT_EQ(made.path, (std::filesystem::current_path() / "b2").string());
  EXPECT_FALSE(made.skip_checkpoints);
  Parsed none = Parse({"admin", "backup"});
  EXPECT_FALSE(none.result.invocation);
  EXPECT_EQ(none.result.exit_code, kExitUsage);
  EXPECT_THAT(none.err, HasSubstr("schedctl admin backup PATH"));
}

TEST(ParseCommandLine, NodeRevoke) {
  Parsed p = Parse({"node", "revoke", "ws2"});
  ASSERT_TRUE(p.result.invocation) << p.err;
  EXPECT_EQ(std::get<NodeRevokeArgs>(p.result.invocation->command).name, "ws2");

  // `node` is a command now; `get node` and `describe node` still name the resource.
  Parsed get = Parse({"get", "node", "ws2"});
  ASSERT_TRUE(get.result.invocation) << get.err;
  EXPECT_EQ(std::get<GetArgs>(get.result.invocation->command).kind, ResourceKind::kNode);
  Parsed describe = Parse({"describe", "node", "ws2"});
  ASSERT_TRUE(describe.result.invocation) << describe.err;
  EXPECT_EQ(std::get<DescribeArgs>(describe.result.invocation->command).name, "ws2");
}

struct UsageCase {
  std::vector<std::string> args;
  const char* error;
  const char* usage;
};

class UsageErrorTest : public ::testing::TestWithParam<UsageCase> {};

TEST_P(UsageErrorTest, ExitsTwoWithTheErrorAndAUsageLine) {
  Parsed p = Parse(GetParam().args);
  EXPECT_FALSE(p.result.invocation);
  EXPECT_EQ(p.result.exit_code, 2);
  EXPECT_THAT(p.err, StartsWith(std::string("error: ") + GetParam().error));
  EXPECT_THAT(p.err, HasSubstr(std::string("\nusage: schedctl ") + GetParam().usage));
  EXPECT_THAT(p.out, IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, UsageErrorTest,
    ::testing::Values(
        UsageCase{{}, "A subcommand is required", "[--server ADDR]"},
        UsageCase{
            {"--server", "h:1", "frobnicate"}, "unknown command \"frobnicate\"", "[--server ADDR]"},
        UsageCase{
            {"get", "pods"}, "unknown resource \"pods\" (expected jobs, nodes, tokens or sweep)", "get "},
        UsageCase{{"describe", "token", "ab"},
                  "unknown resource \"token\" (expected jobs or nodes)",
                  "describe job ID"},
        UsageCase{{"get", "tokens", "--project", "llm"},
                  "-w, --state, --project and --limit apply to jobs only",
                  "get "},
        UsageCase{{"get", "jobs", "-o", "xml"}, "-o: unknown output format \"xml\"", "get "},
        UsageCase{{"get", "jobs", "--state", "sleeping"},
                  "--state: unknown job state \"sleeping\"",
                  "get "},
        UsageCase{{"get", "jobs", "--limit", "0"}, "--limit: Value 0 not in range", "get "},
        UsageCase{{"get", "jobs", "-w", "--limit", "3"}, "--limit cannot be used with -w", "get "},
        UsageCase{{"get", "nodes", "-w"},
                  "-w, --state, --project and --limit apply to jobs only",
                  "get "},
        UsageCase{{"get", "jobs", "--timeout", "soon"},
                  "--timeout: expected a positive duration such as 10s, got \"soon\"",
                  "get "},
        UsageCase{{"submit"}, "--filename is required", "submit -f FILE"},
        UsageCase{{"describe", "node"}, "a node NAME is required", "describe job ID"},
        UsageCase{{"logs"}, "id is required", "logs [-f] ID"},
        UsageCase{{"cordon"}, "node is required", "cordon NODE"},
        UsageCase{{"node"}, "A subcommand is required", "node revoke NODE"},
        UsageCase{{"node", "revoke"}, "node is required", "node revoke NODE"},
        UsageCase{{"node", "cordon", "ws1"}, "A subcommand is required", "node revoke NODE"},
        UsageCase{{"--ca_pin", "abc", "get", "jobs"},
                  "--ca_pin: expected sha256: and 64 hex digits, got \"abc\"",
                  "get "},
        UsageCase{{"get", "jobs", "--ca_pin", "sha256:0123"},
                  "--ca_pin: expected sha256: and 64 hex digits, got \"sha256:0123\"",
                  "get "},
        UsageCase{{"get", "jobs", "--ca_file"}, "--ca_file: 1 required", "get "},
        UsageCase{{"cost", "advise", "--days", "0"}, "--days: Value 0 not in range", "cost "},
        UsageCase{{"cost", "advise", "-o", "wide"}, "-o: expected json or yaml", "cost "},
        UsageCase{{"checkpoints"}, "job is required", "checkpoints JOB [-o json|yaml]"},
        UsageCase{{"checkpoints", "ab", "-o", "wide"}, "-o: expected json or yaml", "checkpoints "},
        UsageCase{
            {"checkpoint"}, "A subcommand is required", "checkpoint get JOB [SEQ] [--to DIR]"},
        UsageCase{{"checkpoint", "get"}, "job is required", "checkpoint get "},
        UsageCase{{"checkpoint", "get", "ab", "0"},
                  "SEQ: expected a checkpoint's number, 1 or more, got \"0\" (leave SEQ out for "
                  "the newest)",
                  "checkpoint get "},
        UsageCase{{"checkpoint", "get", "ab", "-1"},
                  "SEQ: expected a checkpoint's number, 1 or more, got \"-1\"",
                  "checkpoint get "},
        UsageCase{{"checkpoint", "get", "ab", "0x10"},
                  "SEQ: expected a checkpoint's number, 1 or more, got \"0x10\"",
                  "checkpoint get "},
        UsageCase{{"token"}, "A subcommand is required", "token create --role"},
        UsageCase{{"token", "create"}, "--role is required", "token create --role"},
        UsageCase{{"token", "create", "--role", "owner"},
                  "--role: unknown role \"owner\" (expected admin, member, viewer or agent)",
                  "token create --role"},
        UsageCase{{"token", "create", "--role", "unspecified"},
                  "--role: unknown role \"unspecified\"",
                  "token "},
        UsageCase{{"token", "create", "--role", "admin", "--ttl", "forever"},
                  "--ttl: expected a positive duration such as 1h, 90m or 30d, got \"forever\" "
                  "(leave --ttl out for a token that does not expire)",
                  "token "},
        UsageCase{{"token", "create", "--role", "admin", "--ttl", "0s"},
                  "--ttl: expected a positive duration",
                  "token "},
        UsageCase{{"token", "create", "--role", "agent", "--uses", "0"},
                  "--uses: Value 0 not in range",
                  "token "},
        UsageCase{{"token", "create", "--role", "agent", "--label", "zone"},
                  "--label: expected KEY=VALUE, got \"zone\"",
                  "token "},
        UsageCase{{"token", "create", "--role", "agent", "--label", "=eu"},
                  "--label: expected KEY=VALUE, got \"=eu\"",
                  "token "},
        UsageCase{{"token", "create", "--role", "agent", "--label", "a=1", "--label", "a=2"},
                  "--label: a is given twice",
                  "token "},
        UsageCase{{"token", "create", "--role", "admin", "-o", "wide"},
                  "-o: expected json or yaml",
                  "token "},
        UsageCase{{"token", "revoke"}, "id is required", "token "}));

// `args` asks for help: it exits 0 with every one of `wanted` in what it prints.
void ExpectHelpSays(std::vector<std::string> args, const std::vector<std::string>& wanted) {
  args.push_back("--help");
  Parsed p = Parse(args);
  EXPECT_EQ(p.result.exit_code, 0);
  for (const std::string& w : wanted) EXPECT_THAT(p.out, HasSubstr(w));
}

TEST(ParseCommandLine, HelpListsTheCheckpointCommands) {
  ExpectHelpSays({}, {"\n  checkpoints                 List a job's checkpoints\n",
                      "\n  checkpoint                  Download a job's checkpoint\n"});
  ExpectHelpSays({"checkpoint", "get"},
                 {"Usage: schedctl checkpoint get [OPTIONS] job [seq]", "--to TEXT=."});
}

TEST(ParseCommandLine, HelpListsTheTokenCommandsAndOptions) {
  ExpectHelpSays({}, {"\n  token                       Make, list and revoke API tokens\n",
                      "--token TEXT", "--token_file", "$SCHED_TOKEN_FILE"});
  ExpectHelpSays({"token", "create"},
                 {"Usage: schedctl token create [OPTIONS]", "--role TEXT REQUIRED", "--ttl"});
}

TEST(ParseCommandLine, HelpListsNodeRevokeAndTheTlsOptions) {
  ExpectHelpSays({},
                 {"\n  drain                       Cordon a node and let its running jobs "
                  "finish\n  node                        Revoke a node\n",
                  "--ca_file,--ca-file", "$SCHED_CA_FILE", "--ca_pin,--ca-pin", "$SCHED_CA_PIN"});
  ExpectHelpSays({"node", "revoke"},
                 {"Usage: schedctl node revoke [OPTIONS] node", "close its agent's stream"});
}

TEST(ParseCommandLine, HelpGoesToOutAndExitsZero) {
  Parsed p = Parse({"get", "--help"});
  EXPECT_FALSE(p.result.invocation);
  EXPECT_EQ(p.result.exit_code, 0);
  EXPECT_THAT(p.out, HasSubstr("--limit"));
  EXPECT_THAT(p.err, IsEmpty());
}

}  // namespace
}  // namespace sched::client
