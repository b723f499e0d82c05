// The side records schedd reads back from its Store at start: API tokens ("a/t/<id>",
// TokenStore::Open), node certificates ("a/c/<serial>", NodeIdentities::Open) and checkpoint
// manifests ("k/<job>/<seq>", CheckpointStore::Open), here from a MemoryStore filled by the
// input, read with FuzzInput:
//
//   Byte    how many records (at most 32), then for each:
//     Byte    kind: % 4 picks the prefix a/t/, a/c/, k/ or none; with 0x10 on a token record
//             whose value parses, its secret_sha256 is set to that of kSecret (so a token can
//             be presented and get past the secret)
//     String  the rest of the key
//     String  the value
//   String  a token to present to Verify; Byte: as a join (odd) or not
//
// Checked: each Open either fails with DATA_LOSS or gives back what the records hold; Verify
// lets a token through exactly when its secret matches and it is not revoked, expired or out of
// joins, and a join (Verify's or UseJoin) uses one up; revoking and joining are read back the
// same after a restart; HasAdmin, Check, Labels, HasLive and RevokedAt agree with the records;
// revoking a node reaches all its certificates, also after a restart; checkpoint
// manifests are listed per job as stored, and none of their chunk names reaches a file outside
// the chunk folder.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sched/v1/checkpoint_service.pb.h"
#include "sched/v1/storage.pb.h"
#include "server/auth/auth.h"
#include "server/checkpoint/checkpoint_files.h"
#include "server/checkpoint/checkpoint_store.h"
#include "server/common/clock.h"
#include "server/convert/convert.h"
#include "server/store/memory_store.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/submit_checks.h"

namespace sched::fuzz {
namespace {

constexpr absl::string_view kSecret =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
constexpr absl::string_view kTokenPrefix = "a/t/";
constexpr absl::string_view kCertPrefix = "a/c/";
constexpr absl::string_view kCheckpointPrefix = "k/";

using Records = std::map<std::string, std::string>;  // key order, as ScanRecords gives them

bool IsLowerHex(absl::string_view s, size_t size) {
  return s.size() == size && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Records Fill(FuzzInput& in, MemoryStore& store) {
  Records records;
  const int count = in.Byte() % 33;
  for (int i = 0; i < count && !in.empty(); ++i) {
    const uint8_t kind = in.Byte();
    static constexpr absl::string_view kPrefixes[] = {kTokenPrefix, kCertPrefix, kCheckpointPrefix,
                                                      ""};
    const std::string key = absl::StrCat(kPrefixes[kind % 4], in.String(80));
    std::string value = in.String(2048);
    v1::StoredToken token;
    if (kind % 4 == 0 && (kind & 0x10) && token.ParseFromString(value)) {
      token.set_secret_sha256(checkpoint::Sha256Hex(kSecret));
      value = token.SerializeAsString();
    }
    records[key] = value;
    SCHED_FUZZ_CHECK(store.PutRecord(key, value).ok(), "MemoryStore::PutRecord failed");
  }
  return records;
}

// ---- Tokens

// What Verify must answer for `t`, by token_service's contract.
bool ShouldVerify(const v1::StoredToken& t, bool join, absl::Time now) {
  if (t.secret_sha256() != checkpoint::Sha256Hex(kSecret)) return false;
  if (t.token().revoked()) return false;
  if (t.token().has_expire_time() && now >= TimeFromProto(t.token().expire_time())) return false;
  return !(join && t.token().uses_left() == 0);
}

void CheckTokens(const Records& records, MemoryStore& store, const std::string& presented,
                 bool join) {
  FakeClock clock(kFuzzNow);
  absl::StatusOr<std::unique_ptr<auth::TokenStore>> opened = auth::TokenStore::Open(&store, &clock);
  if (!opened.ok()) {
    SCHED_FUZZ_CHECK(absl::IsDataLoss(opened.status()),
                     absl::StrCat("TokenStore::Open answered ", Describe(opened.status())));
    return;
  }
  auth::TokenStore& tokens = **opened;

  // The records as Open must have read them: in key order, the last of an id wins.
  std::map<std::string, v1::StoredToken> expected;
  bool keyed_by_id = true;  // every record under a/t/<its own id>, as schedd writes them
  for (auto it = records.lower_bound(std::string(kTokenPrefix));
       it != records.end() && absl::StartsWith(it->first, kTokenPrefix); ++it) {
    v1::StoredToken t;
    SCHED_FUZZ_CHECK(t.ParseFromString(it->second) && IsLowerHex(t.token().id(), 16),
                     absl::StrCat("TokenStore::Open took record ", it->first));
    keyed_by_id = keyed_by_id && it->first == absl::StrCat(kTokenPrefix, t.token().id());
    expected[t.token().id()] = t;
  }
  const std::vector<v1::Token> listed = tokens.List();
  SCHED_FUZZ_CHECK(
      listed.size() == expected.size(),
      absl::StrCat("List has ", listed.size(), " tokens, the records ", expected.size()));
  for (size_t i = 0; i < listed.size(); ++i) {
    SCHED_FUZZ_CHECK(expected.count(listed[i].id()) != 0, "List made up a token");
    SCHED_FUZZ_CHECK(
        DeterministicBytes(listed[i]) == DeterministicBytes(expected[listed[i].id()].token()),
        absl::StrCat("token ", listed[i].id(), " is not listed as stored"));
    if (i > 0) {
      const absl::Time a = TimeFromProto(listed[i - 1].create_time());
      const absl::Time b = TimeFromProto(listed[i].create_time());
      SCHED_FUZZ_CHECK(a < b || (a == b && listed[i - 1].id() < listed[i].id()),
                       "List is not in create order");
    }
  }
  bool admin = false;
  for (const auto& [id, t] : expected) {
    admin = admin || (t.token().role() == v1::ROLE_ADMIN && !t.token().revoked() &&
                      !t.token().has_expire_time());
  }
  SCHED_FUZZ_CHECK(tokens.HasAdmin() == admin, "HasAdmin disagrees with the records");

  // The presented token gets through only as one of the stored tokens with kSecret.
  absl::StatusOr<v1::Token> got = tokens.Verify(presented, join);
  if (got.ok()) {
    SCHED_FUZZ_CHECK(presented == absl::StrCat(got->id(), ".", kSecret),
                     absl::StrCat("Verify let \"", presented, "\" through as ", got->id()));
  } else {
    SCHED_FUZZ_CHECK(absl::IsUnauthenticated(got.status()), Describe(got.status()));
  }
  if (got.ok()) expected[got->id()].mutable_token()->set_uses_left(got->uses_left());

  // Every token, presented with kSecret: a join, a plain use, then revoked.
  int tried = 0;
  for (auto& [id, t] : expected) {
    if (++tried > 8) break;
    const std::string secret = absl::StrCat(id, ".", kSecret);
    for (bool as_join : {true, false}) {
      const bool should = ShouldVerify(t, as_join, kFuzzNow);
      absl::StatusOr<v1::Token> v = tokens.Verify(secret, as_join);
      SCHED_FUZZ_CHECK(v.ok() == should,
                       absl::StrCat("Verify(", id, ", join ", as_join, ") answered ",
                                    Describe(v.status()), " for\n", t.DebugString()));
      if (!v.ok()) {
        SCHED_FUZZ_CHECK(absl::IsUnauthenticated(v.status()), Describe(v.status()));
        continue;
      }
      const int64_t left = t.token().uses_left();
      const int64_t want = as_join && left > 0 ? left - 1 : left;
      SCHED_FUZZ_CHECK(v->uses_left() == want,
                       absl::StrCat("a join left ", v->uses_left(), " of ", left));
      t.mutable_token()->set_uses_left(want);
    }
    // A join that passed its checks elsewhere (the Join handler) uses one up.
    const absl::Status used = tokens.UseJoin(id);
    const int64_t left = t.token().uses_left();
    SCHED_FUZZ_CHECK(used.ok() == (left != 0), absl::StrCat("UseJoin(", id, ") with ", left,
                                                            " left answered ", Describe(used)));
    if (!used.ok()) SCHED_FUZZ_CHECK(absl::IsUnauthenticated(used), Describe(used));
    if (used.ok() && left > 0) t.mutable_token()->set_uses_left(left - 1);
    absl::StatusOr<v1::Token> revoked = tokens.Revoke(id);
    SCHED_FUZZ_CHECK(revoked.ok() && revoked->revoked(),
                     absl::StrCat("Revoke(", id, ") answered ", Describe(revoked.status())));
    t.mutable_token()->set_revoked(true);
    SCHED_FUZZ_CHECK(!tokens.Verify(secret, false).ok(), "a revoked token verifies");
  }
  SCHED_FUZZ_CHECK(!tokens.Revoke("no-such-token").ok(), "revoked a token that is not there");
  SCHED_FUZZ_CHECK(absl::IsUnauthenticated(tokens.UseJoin("no-such-token")),
                   "UseJoin of a token that is not there");

  // After a restart the tokens are as they are now. (A record filed under another token's id
  // may win the next Open, so this holds only for records kept as schedd keeps them.)
  if (!keyed_by_id) return;
  absl::StatusOr<std::unique_ptr<auth::TokenStore>> reopened =
      auth::TokenStore::Open(&store, &clock);
  SCHED_FUZZ_CHECK(reopened.ok(),
                   absl::StrCat("the tokens do not open again: ", Describe(reopened.status())));
  const std::vector<v1::Token> now = tokens.List(), after = (*reopened)->List();
  SCHED_FUZZ_CHECK(now.size() == after.size(), "a token was lost across a restart");
  for (size_t i = 0; i < now.size(); ++i) {
    SCHED_FUZZ_CHECK(DeterministicBytes(now[i]) == DeterministicBytes(after[i]),
                     absl::StrCat("token ", now[i].id(), " reads back as\n", after[i].DebugString(),
                                  "not\n", now[i].DebugString()));
  }
}

// ---- Node certificates

void CheckCerts(const Records& records, MemoryStore& store) {
  absl::StatusOr<std::unique_ptr<auth::NodeIdentities>> opened = auth::NodeIdentities::Open(&store);
  std::map<std::string, v1::StoredNodeCertificate> expected;  // by serial
  bool parses = true;
  for (auto it = records.lower_bound(std::string(kCertPrefix));
       it != records.end() && absl::StartsWith(it->first, kCertPrefix); ++it) {
    v1::StoredNodeCertificate c;
    if (!c.ParseFromString(it->second) || c.node().empty()) {
      parses = false;
      break;
    }
    expected[it->first.substr(kCertPrefix.size())] = c;
  }
  if (!opened.ok()) {
    SCHED_FUZZ_CHECK(absl::IsDataLoss(opened.status()) && !parses,
                     absl::StrCat("NodeIdentities::Open answered ", Describe(opened.status())));
    return;
  }
  SCHED_FUZZ_CHECK(parses,
                   "NodeIdentities::Open took a record that does not parse or names no "
                   "node");
  auth::NodeIdentities& ids = **opened;
  std::map<std::string, absl::Time> revoked_at;
  std::map<std::string, bool> live;
  for (const auto& [serial, c] : expected) {
    absl::StatusOr<std::string> node = ids.Check(serial);
    SCHED_FUZZ_CHECK(node.ok() == !c.revoked(),
                     absl::StrCat("Check(", serial, ") answered ", Describe(node.status())));
    if (node.ok()) SCHED_FUZZ_CHECK(*node == c.node(), "Check named another node");
    if (!node.ok()) SCHED_FUZZ_CHECK(absl::IsUnauthenticated(node.status()), "Check's code");
    const std::map<std::string, std::string> labels(c.labels().begin(), c.labels().end());
    SCHED_FUZZ_CHECK(ids.Labels(serial) == labels, absl::StrCat("Labels(", serial, ")"));
    if (c.revoked()) {
      absl::Time& at = revoked_at.try_emplace(c.node(), absl::InfinitePast()).first->second;
      at = std::max(at, absl::FromUnixMillis(c.revoked_unix_ms()));
    }
    live[c.node()] =
        live[c.node()] || (!c.revoked() && absl::FromUnixSeconds(c.not_after_unix()) > kFuzzNow);
  }
  for (const auto& [node, has_live] : live) {
    const absl::Time want = revoked_at.count(node) != 0 ? revoked_at[node] : absl::InfinitePast();
    SCHED_FUZZ_CHECK(ids.RevokedAt(node) == want, absl::StrCat("RevokedAt(", node, ")"));
    SCHED_FUZZ_CHECK(ids.HasLive(node, kFuzzNow) == has_live, absl::StrCat("HasLive(", node, ")"));
  }
  SCHED_FUZZ_CHECK(!ids.Check("no-such-serial").ok(), "an unknown serial passed Check");

  // Revoking a node reaches every one of its certificates, also after a restart.
  if (expected.empty()) return;
  const std::string node = expected.begin()->second.node();
  int unrevoked = 0;
  for (const auto& [serial, c] : expected) unrevoked += c.node() == node && !c.revoked();
  absl::StatusOr<int> n = ids.Revoke(node, kFuzzNow);
  SCHED_FUZZ_CHECK(
      n.ok() && *n == unrevoked,
      absl::StrCat("Revoke(", node, ") answered ", n.ok() ? absl::StrCat(*n) : Describe(n.status()),
                   ", ", unrevoked, " to revoke"));
  absl::StatusOr<std::unique_ptr<auth::NodeIdentities>> reopened =
      auth::NodeIdentities::Open(&store);
  SCHED_FUZZ_CHECK(reopened.ok(),
                   absl::StrCat("certificates do not open again: ", Describe(reopened.status())));
  absl::Time last = revoked_at.count(node) != 0 ? revoked_at[node] : absl::InfinitePast();
  if (unrevoked > 0) last = std::max(last, kFuzzNow);
  for (const auto& [serial, c] : expected) {
    if (c.node() != node) continue;
    SCHED_FUZZ_CHECK(!ids.Check(serial).ok() && !(*reopened)->Check(serial).ok(),
                     absl::StrCat("certificate ", serial, " of revoked node ", node, " works"));
  }
  SCHED_FUZZ_CHECK(!(*reopened)->HasLive(node, kFuzzNow), "a revoked node still has a live one");
  SCHED_FUZZ_CHECK((*reopened)->RevokedAt(node) == last, "RevokedAt changed across a restart");
}

// ---- Checkpoint manifests

void CheckCheckpoints(const Records& records, MemoryStore& store) {
  CheckpointStoreOptions options;
  options.root = absl::StrCat(ScratchDir("side-records"), "/checkpoints");
  absl::StatusOr<std::unique_ptr<CheckpointStore>> opened = CheckpointStore::Open(options, &store);
  std::map<std::string, std::vector<v1::Checkpoint>> expected;
  bool parses = true;
  for (auto it = records.lower_bound(std::string(kCheckpointPrefix));
       it != records.end() && absl::StartsWith(it->first, kCheckpointPrefix); ++it) {
    v1::Checkpoint c;
    if (!c.ParseFromString(it->second)) {
      parses = false;
      break;
    }
    expected[c.job_id()].push_back(c);
  }
  if (!opened.ok()) {
    SCHED_FUZZ_CHECK(absl::IsDataLoss(opened.status()) && !parses,
                     absl::StrCat("CheckpointStore::Open answered ", Describe(opened.status())));
    return;
  }
  SCHED_FUZZ_CHECK(parses, "CheckpointStore::Open took a record that does not parse");
  const CheckpointStore& checkpoints = **opened;
  SCHED_FUZZ_CHECK(checkpoints.chunks() == 0, "chunks counted in an empty chunk folder");
  for (const auto& [job, kept] : expected) {
    const std::vector<v1::Checkpoint> listed = checkpoints.List(job);
    SCHED_FUZZ_CHECK(
        listed.size() == kept.size(),
        absl::StrCat("job ", job, ": ", listed.size(), " listed, ", kept.size(), " stored"));
    absl::StatusOr<v1::Checkpoint> newest = checkpoints.Get(job, 0);
    SCHED_FUZZ_CHECK(newest.ok() && DeterministicBytes(*newest) == DeterministicBytes(kept.back()),
                     absl::StrCat("Get(", job, ", 0) is not the last stored"));
    // Chunk names come from the record: none may reach a file (there are none to reach).
    int looked = 0;
    for (const v1::CheckpointFile& f : newest->files()) {
      for (const std::string& sha : f.chunks()) {
        if (++looked > 16) break;
        SCHED_FUZZ_CHECK(!checkpoints.HasChunk(sha), absl::StrCat("HasChunk(", sha, ")"));
        absl::StatusOr<std::string> data = checkpoints.ReadChunk(sha);
        SCHED_FUZZ_CHECK(
            absl::IsNotFound(data.status()) || absl::IsInvalidArgument(data.status()),
            absl::StrCat("ReadChunk(\"", sha, "\") answered ", Describe(data.status())));
      }
    }
  }
}

}  // namespace
}  // namespace sched::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sched;
  using namespace sched::fuzz;
  FuzzInput in(data, size);
  MemoryStore store;
  const Records records = Fill(in, store);
  const std::string presented = in.String(200);
  const bool join = in.Bool();
  CheckCheckpoints(records, store);
  CheckCerts(records, store);
  CheckTokens(records, store, presented, join);
  return 0;
}
