// CheckpointService over loopback, on an in-process schedd whose one agent is a FakeAgentLink:
// uploads fenced by the lease, content-addressed chunks, retention, and the refusals (corrupted
// chunk, stale epoch, paths out of the checkpoint, oversized chunk and checkpoint).
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "sched/v1/checkpoint_service.grpc.pb.h"
#include "server/checkpoint/checkpoint_files.h"
#include "server/checkpoint/checkpoint_store.h"
#include "server/checkpoint/checkpoint_transfer.h"
#include "server/daemon/daemon.h"
#include "server/store/memory_store.h"
#include "tests/testing/fake_agent_link.h"
#include "tests/testing/subprocess.h"

namespace sched {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

void WriteFile(const fs::path& path, const std::string& data) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class CheckpointServiceTest : public ::testing::Test {
 protected:
  void Start(size_t keep = 3, uint64_t max_bytes = uint64_t{64} << 30) {
    dir_ = testing::MakeTempDir("sched_checkpoint_service_");
    DaemonOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.data_dir = dir_ + "/schedd";
    o.checkpoint_keep = keep;
    o.max_checkpoint_bytes = max_bytes;
    auto d = Daemon::Start(o, &store_, &clock_);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(daemon_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::CheckpointService::NewStub(channel);
    // One node, and a job leased to it.
    Scheduler* s = daemon_->scheduler();
    NodeCapabilities caps;
    caps.cpu_millis = 4000;
    caps.memory_bytes = int64_t{8} << 30;
    std::optional<absl::StatusOr<uint64_t>> session;
    s->ConnectAgent("ws", caps, {}, link_, [&](absl::StatusOr<uint64_t> r) { session = r; });
    ASSERT_TRUE(session.has_value() && session->ok());
    JobSpec spec;
    spec.name = "train";
    spec.run = "true";
    spec.resources.cpu_millis = 1000;
    std::optional<absl::StatusOr<SubmitResult>> submitted;
    s->Submit(spec, "", [&](absl::StatusOr<SubmitResult> r) { submitted = std::move(r); });
    ASSERT_TRUE(submitted.has_value() && submitted->ok());
    job_id_ = (*submitted)->job.id;
    for (const auto& c : link_->Take()) {
      if (c.kind == "assign" && c.job_id == job_id_) epoch_ = c.epoch;
    }
    ASSERT_GT(epoch_, 0u);
  }

  void TearDown() override {
    daemon_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  v1::CheckpointUploader Uploader(uint64_t epoch = 0, const std::string& node = "ws") {
    v1::CheckpointUploader u;
    u.set_job_id(job_id_);
    u.set_epoch(epoch == 0 ? epoch_ : epoch);
    u.set_node_name(node);
    return u;
  }

  absl::StatusOr<v1::Checkpoint> Upload(const std::string& path,
                                        checkpoint::UploadStats* stats = nullptr,
                                        std::optional<v1::CheckpointUploader> who = std::nullopt) {
    return checkpoint::Upload(*stub_, who ? *who : Uploader(), 1, path, absl::Seconds(10), stats);
  }

  std::vector<v1::Checkpoint> List() {
    grpc::ClientContext ctx;
    v1::ListCheckpointsRequest req;
    req.set_job_id(job_id_.substr(0, 6));  // a prefix does
    v1::ListCheckpointsResponse resp;
    EXPECT_TRUE(stub_->ListCheckpoints(&ctx, req, &resp).ok());
    return {resp.checkpoints().begin(), resp.checkpoints().end()};
  }

  grpc::Status Commit(const v1::CommitCheckpointRequest& req) {
    grpc::ClientContext ctx;
    v1::Checkpoint resp;
    return stub_->CommitCheckpoint(&ctx, req, &resp);
  }

  FakeClock clock_;
  MemoryStore store_;
  std::shared_ptr<testing::FakeAgentLink> link_ = std::make_shared<testing::FakeAgentLink>();
  std::string dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::CheckpointService::Stub> stub_;
  std::string job_id_;
  uint64_t epoch_ = 0;
};

TEST_F(CheckpointServiceTest, UploadsListsAndDownloadsAndSendsOnlyChangedChunks) {
  Start();
  const fs::path src = fs::path(dir_) / "job" / "step-000010";
  const std::string big(checkpoint::kChunkBytes + 1000, 'w');  // two chunks
  WriteFile(src / "state.json", "{\"step\": 10}");
  WriteFile(src / "weights" / "w.bin", big);
  WriteFile(src / "empty", "");
  checkpoint::UploadStats stats;
  absl::StatusOr<v1::Checkpoint> first = Upload(src.string(), &stats);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->seq(), 1u);
  EXPECT_EQ(first->name(), "step-000010");
  EXPECT_EQ(first->node(), "ws");
  EXPECT_EQ(first->epoch(), epoch_);
  EXPECT_TRUE(first->is_dir());
  EXPECT_EQ(first->size_bytes(), big.size() + 12);
  ASSERT_THAT(first->files(), SizeIs(3));
  EXPECT_EQ(first->files(2).path(), "weights/w.bin");
  EXPECT_THAT(first->files(2).chunks(), SizeIs(2));
  EXPECT_EQ(stats.chunks, 3u);  // the empty file has none
  EXPECT_EQ(stats.chunks_sent, 3u);
  EXPECT_EQ(daemon_->checkpoints()->chunks(), 3u);

  // The next checkpoint changes state.json only: its one chunk is all that travels and is kept.
  const fs::path next = fs::path(dir_) / "job" / "step-000020";
  fs::copy(src, next, fs::copy_options::recursive);
  WriteFile(next / "state.json", "{\"step\": 20}");
  checkpoint::UploadStats again;
  absl::StatusOr<v1::Checkpoint> second = Upload(next.string(), &again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->seq(), 2u);
  EXPECT_EQ(again.chunks_sent, 1u);
  EXPECT_EQ(again.bytes_sent, 12u);
  EXPECT_EQ(daemon_->checkpoints()->chunks(), 4u);

  std::vector<v1::Checkpoint> listed = List();
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].name(), "step-000010");
  EXPECT_EQ(listed[1].name(), "step-000020");

  // The newest comes home whole and verified; an older one by its number.
  const fs::path home = fs::path(dir_) / "home";
  absl::StatusOr<checkpoint::Downloaded> got =
      checkpoint::Download(*stub_, job_id_.substr(0, 8), 0, home.string(), absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->path, (home / "step-000020").string());
  EXPECT_EQ(ReadFile(home / "step-000020" / "state.json"), "{\"step\": 20}");
  EXPECT_EQ(ReadFile(home / "step-000020" / "weights" / "w.bin"), big);
  EXPECT_TRUE(fs::is_regular_file(home / "step-000020" / "empty"));
  got = checkpoint::Download(*stub_, job_id_, 1, home.string(), absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ReadFile(home / "step-000010" / "state.json"), "{\"step\": 10}");
  // Not over what is there.
  got = checkpoint::Download(*stub_, job_id_, 1, home.string(), absl::Seconds(10));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAlreadyExists);
  got = checkpoint::Download(*stub_, job_id_, 9, home.string(), absl::Seconds(10));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);

  // A single file is a checkpoint too.
  WriteFile(fs::path(dir_) / "job" / "model.pt", "tensor bytes");
  absl::StatusOr<v1::Checkpoint> file = Upload((fs::path(dir_) / "job" / "model.pt").string());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE(file->is_dir());
  got = checkpoint::Download(*stub_, job_id_, 0, home.string(), absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ReadFile(home / "model.pt"), "tensor bytes");
}

TEST_F(CheckpointServiceTest, AnUploadOverParallelLanesAndSmallWindowsSendsEachNewChunkOnce) {
  Start();
  // Chunks that differ from each other, then files that repeat some of them.
  auto chunk = [](char seed) {
    std::string c(checkpoint::kChunkBytes, '\0');
    for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<char>(seed + i * 7 + i / 997);
    return c;
  };
  std::string a;
  for (char seed : {'a', 'b', 'c', 'd', 'e'}) a += chunk(seed);
  a += "tail";
  const std::string b = a.substr(0, 2 * checkpoint::kChunkBytes);  // a's first two chunks again
  const std::string z = chunk('z');
  const std::string c = z + z + z;  // one chunk three times
  const fs::path src = fs::path(dir_) / "job" / "step-000001";
  WriteFile(src / "a.bin", a);
  WriteFile(src / "b.bin", b);
  WriteFile(src / "c.bin", c);
  checkpoint::UploadStats stats;
  checkpoint::TransferOptions three_lanes;
  three_lanes.lanes = 3;
  three_lanes.window = 2;
  absl::StatusOr<v1::Checkpoint> up = checkpoint::Upload(*stub_, Uploader(), 1, src.string(),
                                                         absl::Seconds(30), &stats, three_lanes);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(stats.chunks, 7u);  // a's six and z
  EXPECT_EQ(stats.chunks_sent, 7u);
  EXPECT_EQ(stats.bytes_sent, a.size() + z.size());
  EXPECT_EQ(daemon_->checkpoints()->chunks(), 7u);
  ASSERT_THAT(up->files(), SizeIs(3));
  EXPECT_EQ(up->files(1).chunks(1), up->files(0).chunks(1));
  EXPECT_EQ(up->files(2).chunks(2), checkpoint::Sha256Hex(z));
  EXPECT_EQ(up->size_bytes(), a.size() + b.size() + c.size());

  const fs::path home = fs::path(dir_) / "home";
  absl::StatusOr<checkpoint::Downloaded> got =
      checkpoint::Download(*stub_, job_id_, 0, home.string(), absl::Seconds(30));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(ReadFile(home / "step-000001" / "a.bin") == a);
  EXPECT_TRUE(ReadFile(home / "step-000001" / "b.bin") == b);
  EXPECT_TRUE(ReadFile(home / "step-000001" / "c.bin") == c);

  // The same files under a new name, on one lane: nothing travels.
  const fs::path again = fs::path(dir_) / "job" / "step-000002";
  fs::copy(src, again, fs::copy_options::recursive);
  checkpoint::UploadStats none;
  checkpoint::TransferOptions one_lane;
  one_lane.lanes = 1;
  ASSERT_TRUE(checkpoint::Upload(*stub_, Uploader(), 1, again.string(), absl::Seconds(30), &none,
                                 one_lane)
                  .ok());
  EXPECT_EQ(none.chunks, 7u);
  EXPECT_EQ(none.chunks_sent, 0u);
}

TEST_F(CheckpointServiceTest, OnlyTheLeaseHolderAtItsEpochMayUpload) {
  Start();
  const fs::path src = fs::path(dir_) / "job" / "step-000001";
  WriteFile(src / "a", "a");
  absl::StatusOr<v1::Checkpoint> stale = Upload(src.string(), nullptr, Uploader(epoch_ + 1));
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_THAT(stale.status().message(), HasSubstr("stale epoch"));
  absl::StatusOr<v1::Checkpoint> other = Upload(src.string(), nullptr, Uploader(0, "other"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  v1::CheckpointUploader nobody = Uploader();
  nobody.set_job_id("00000000deadbeef");
  EXPECT_EQ(Upload(src.string(), nullptr, nobody).status().code(), absl::StatusCode::kNotFound);
  nobody.set_job_id("");
  EXPECT_EQ(Upload(src.string(), nullptr, nobody).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Each call checks: a stream of chunks under a stale epoch is refused too, and nothing kept.
  grpc::ClientContext ctx;
  v1::PutChunksResponse resp;
  auto writer = stub_->PutChunks(&ctx, &resp);
  v1::PutChunkRequest chunk;
  *chunk.mutable_uploader() = Uploader(epoch_ + 1);
  chunk.set_sha256(checkpoint::Sha256Hex("x"));
  chunk.set_data("x");
  writer->Write(chunk);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_FALSE(daemon_->checkpoints()->HasChunk(checkpoint::Sha256Hex("x")));
  EXPECT_THAT(List(), SizeIs(0));
  // The holder may.
  EXPECT_TRUE(Upload(src.string()).ok());
  EXPECT_THAT(List(), SizeIs(1));
}

TEST_F(CheckpointServiceTest, CorruptedChunkIsRefusedAndABrokenUploadResumes) {
  Start();
  const fs::path src = fs::path(dir_) / "job" / "step-000001";
  WriteFile(src / "a", std::string(checkpoint::kChunkBytes, 'a') + "tail");
  std::vector<checkpoint::LocalChunk> chunks;
  ASSERT_TRUE(checkpoint::Describe(src.string(), &chunks).ok());
  ASSERT_THAT(chunks, SizeIs(2));
  {
    // The bytes of the second chunk under the first one's name.
    grpc::ClientContext ctx;
    v1::PutChunksResponse resp;
    auto writer = stub_->PutChunks(&ctx, &resp);
    v1::PutChunkRequest req;
    *req.mutable_uploader() = Uploader();
    req.set_sha256(chunks[0].sha256);
    req.set_data("tail");
    writer->Write(req);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
    EXPECT_THAT(s.error_message(), HasSubstr("corrupted"));
    EXPECT_FALSE(daemon_->checkpoints()->HasChunk(chunks[0].sha256));
  }
  {
    // The connection breaks after the first chunk went through.
    grpc::ClientContext ctx;
    v1::PutChunksResponse resp;
    auto writer = stub_->PutChunks(&ctx, &resp);
    v1::PutChunkRequest req;
    *req.mutable_uploader() = Uploader();
    req.set_sha256(chunks[0].sha256);
    req.set_data(*checkpoint::ReadChunk(chunks[0]));
    writer->Write(req);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  // A commit before every chunk is there is ABORTED and names the missing one.
  v1::CommitCheckpointRequest commit;
  *commit.mutable_uploader() = Uploader();
  commit.set_name("step-000001");
  commit.set_is_dir(true);
  v1::Checkpoint manifest = *checkpoint::Describe(src.string(), nullptr);
  *commit.mutable_files() = manifest.files();
  grpc::Status early = Commit(commit);
  EXPECT_EQ(early.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(early.error_message(), HasSubstr(chunks[1].sha256));
  // The upload again sends only what did not arrive.
  checkpoint::UploadStats stats;
  ASSERT_TRUE(Upload(src.string(), &stats).ok());
  EXPECT_EQ(stats.chunks_sent, 1u);
  EXPECT_EQ(stats.bytes_sent, 4u);
}

TEST_F(CheckpointServiceTest, NamesAndPathsOutOfTheCheckpointAreRefused) {
  Start();
  // Every chunk a manifest might name is stored, so only the names are at fault.
  const std::string data = "payload";
  const std::string sha = checkpoint::Sha256Hex(data);
  ASSERT_TRUE(daemon_->checkpoints()->PutChunk(sha, data).ok());
  auto request = [&](const std::string& name, const std::string& path) {
    v1::CommitCheckpointRequest req;
    *req.mutable_uploader() = Uploader();
    req.set_name(name);
    req.set_is_dir(true);
    v1::CheckpointFile* f = req.add_files();
    f->set_path(path);
    f->set_size_bytes(data.size());
    f->add_chunks(sha);
    f->set_sha256(sha);
    return req;
  };
  for (const std::string& path :
       std::vector<std::string>{"../outside", "a/../../outside", "/etc/passwd", "a//b", "./a",
                                std::string("a\0b", 3), "a\\..\\b"}) {
    grpc::Status s = Commit(request("step-1", path));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
  }
  for (const std::string& name :
       std::vector<std::string>{"..", "../x", "a/b", ".hidden", "step.tmp", "", "x y"}) {
    grpc::Status s = Commit(request(name, "a"));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
  }
  // A file that is also a folder, or listed twice.
  v1::CommitCheckpointRequest both = request("step-1", "a");
  *both.add_files() = both.files(0);
  both.mutable_files(1)->set_path("a/b");
  EXPECT_EQ(Commit(both).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::CommitCheckpointRequest twice = request("step-1", "a");
  *twice.add_files() = twice.files(0);
  EXPECT_EQ(Commit(twice).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A chunk name that is not a sha256 could name a path of its own.
  grpc::ClientContext ctx;
  v1::FindMissingChunksRequest find;
  *find.mutable_uploader() = Uploader();
  find.add_chunks("../../store/CURRENT");
  v1::FindMissingChunksResponse missing;
  EXPECT_EQ(stub_->FindMissingChunks(&ctx, find, &missing).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(List(), SizeIs(0));
  // The right one is taken.
  EXPECT_TRUE(Commit(request("step-1", "dir/a")).ok());
  // On the agent's side, a link in a published checkpoint is refused before anything is sent.
  const fs::path src = fs::path(dir_) / "job" / "step-000002";
  WriteFile(src / "a", "a");
  fs::create_symlink("/etc/passwd", src / "link");
  EXPECT_EQ(Upload(src.string()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointServiceTest, OversizedChunksAndCheckpointsAreRefused) {
  Start(/*keep=*/3, /*max_bytes=*/1 << 20);
  const std::string over(checkpoint::kChunkBytes + 1, 'o');
  grpc::ClientContext ctx;
  v1::PutChunksResponse resp;
  auto writer = stub_->PutChunks(&ctx, &resp);
  v1::PutChunkRequest req;
  *req.mutable_uploader() = Uploader();
  req.set_sha256(checkpoint::Sha256Hex(over));
  req.set_data(over);
  writer->Write(req);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("over the limit"));
  // Over the checkpoint cap (1 MiB here): refused at commit.
  const fs::path src = fs::path(dir_) / "job" / "step-000001";
  WriteFile(src / "a", std::string((1 << 20) + 1, 'a'));
  absl::StatusOr<v1::Checkpoint> big = Upload(src.string());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_THAT(List(), SizeIs(0));
}

TEST_F(CheckpointServiceTest, KeepsTheNewestAndDropsChunksNoKeptOneUses) {
  Start(/*keep=*/2);
  const std::string shared(1000, 's');
  for (int i = 1; i <= 3; ++i) {
    const fs::path src = fs::path(dir_) / "job" / absl::StrCat("step-00000", i);
    WriteFile(src / "shared", shared);
    WriteFile(src / "own", absl::StrCat("step ", i));
    ASSERT_TRUE(Upload(src.string()).ok());
  }
  std::vector<v1::Checkpoint> kept = List();
  ASSERT_THAT(kept, SizeIs(2));
  EXPECT_EQ(kept[0].seq(), 2u);
  EXPECT_EQ(kept[1].seq(), 3u);
  // The shared chunk and the two kept "own" chunks stay; step 1's own chunk is gone.
  EXPECT_EQ(daemon_->checkpoints()->chunks(), 3u);
  EXPECT_FALSE(daemon_->checkpoints()->HasChunk(checkpoint::Sha256Hex("step 1")));
  EXPECT_TRUE(daemon_->checkpoints()->HasChunk(checkpoint::Sha256Hex(shared)));
  // The manifests outlive a restart of schedd on the same store and folder.
  daemon_.reset();
  DaemonOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "";
  o.data_dir = dir_ + "/schedd";
  o.checkpoint_keep = 2;
  auto d = Daemon::Start(o, &store_, &clock_);
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = std::move(*d);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(daemon_->port()),
                                     grpc::InsecureChannelCredentials());
  stub_ = v1::CheckpointService::NewStub(channel);
  kept = List();
  ASSERT_THAT(kept, SizeIs(2));
  EXPECT_EQ(kept[1].name(), "step-000003");
  EXPECT_EQ(daemon_->checkpoints()->chunks(), 3u);
}

}  // namespace
}  // namespace sched
