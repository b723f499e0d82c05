// checkpoint::Writer checks every chunk against its name as its last byte arrives (or, with
// threads of its own to check on, soon after), so a download stops at the first wrong chunk and
// leaves nothing behind. And the agent's side: a checkpoint laid out, then read and hashed on
// several threads, gives the same manifest as on one, and a file that changes in between is
// refused.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint/checkpoint_files.h"
#include "tests/testing/test_data_dir.h"

namespace sched::checkpoint {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// 2.5 chunks of bytes that differ from chunk to chunk.
std::string Bytes() {
  std::string b(kChunkBytes * 5 / 2, '\0');
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
  return b;
}

// The parameter: the Writer's threads for checking chunks (1: in Add itself).
class CheckpointWriterTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    root_ = fs::path(sched::testing::TestDataDir()) / "writer";
    fs::remove_all(root_);
    fs::create_directories(root_ / "published" / "step-1");
    std::ofstream(root_ / "published" / "step-1" / "model.bin", std::ios::binary) << Bytes();
    absl::StatusOr<v1::Checkpoint> m = Describe((root_ / "published" / "step-1").string(), nullptr);
    ASSERT_TRUE(m.ok()) << m.status();
    manifest_ = *m;
    ASSERT_EQ(manifest_.files_size(), 1);
    ASSERT_EQ(manifest_.files(0).chunks_size(), 3);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Feeds `data` in pieces of `piece` bytes: the first error, else Finish's.
  absl::StatusOr<std::string> Write(const v1::Checkpoint& manifest, const std::string& data,
                                    size_t piece) {
    absl::StatusOr<std::unique_ptr<Writer>> w =
        Writer::Start((root_ / "home").string(), manifest, GetParam());
    if (!w.ok()) return w.status();
    for (size_t at = 0; at < data.size(); at += piece) {
      if (absl::Status s = (*w)->Add(absl::string_view(data).substr(at, piece)); !s.ok()) return s;
    }
    return (*w)->Finish();
  }

  std::string Read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  fs::path root_;
  v1::Checkpoint manifest_;
};

TEST_P(CheckpointWriterTest, WritesTheBytesWhateverPiecesTheyComeIn) {
  EXPECT_TRUE(manifest_.files(0).sha256().empty()) << "each chunk is checked instead";
  for (size_t piece : {size_t{1} << 20, size_t{3'000'001}, kChunkBytes * 3}) {
    absl::StatusOr<std::string> path = Write(manifest_, Bytes(), piece);
    ASSERT_TRUE(path.ok()) << piece << ": " << path.status();
    EXPECT_EQ(Read(fs::path(*path) / "model.bin"), Bytes());
    fs::remove_all(root_ / "home");
  }
}

TEST_P(CheckpointWriterTest, AWrongByteInALaterChunkIsDataLossAndLeavesNothing) {
  std::string bad = Bytes();
  bad[kChunkBytes + 17] ^= 1;  // in the second chunk
  absl::StatusOr<std::string> path = Write(manifest_, bad, 1 << 20);
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(path.status().message(), HasSubstr(manifest_.files(0).chunks(1)));
  EXPECT_THAT(path.status().message(), HasSubstr("ending at 8388608"));
  EXPECT_FALSE(fs::exists(root_ / "home" / "step-1"));
  EXPECT_FALSE(fs::exists(root_ / "home" / ".tmp-step-1"));
}

TEST_P(CheckpointWriterTest, AWholeFileSha256IsStillCheckedWhenAManifestNamesOne) {
  v1::Checkpoint older = manifest_;
  older.mutable_files(0)->set_sha256(Sha256Hex(Bytes()));
  absl::StatusOr<std::string> ok = Write(older, Bytes(), 1 << 20);
  ASSERT_TRUE(ok.ok()) << ok.status();
  fs::remove_all(root_ / "home");

  older.mutable_files(0)->set_sha256(Sha256Hex("something else"));
  absl::StatusOr<std::string> bad = Write(older, Bytes(), 1 << 20);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("the manifest says " + Sha256Hex("something else")));
}

TEST_P(CheckpointWriterTest, BytesPastTheManifestAreRefused) {
  std::string more = Bytes() + "x";
  absl::StatusOr<std::string> path = Write(manifest_, more, 1 << 20);
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(root_ / "home" / "step-1"));
}

INSTANTIATE_TEST_SUITE_P(CheckingThreads, CheckpointWriterTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return p.param == 1 ? std::string("InAdd")
                                               : absl::StrCat(p.param, "Threads");
                         });

class LocalCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(sched::testing::TestDataDir()) / "local";
    fs::remove_all(root_);
    fs::create_directories(root_ / "step-1" / "sub");
    std::ofstream(root_ / "step-1" / "model.bin", std::ios::binary) << Bytes();
    std::ofstream(root_ / "step-1" / "sub" / "same.bin", std::ios::binary) << Bytes();
    std::ofstream(root_ / "step-1" / "empty", std::ios::binary) << "";
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(LocalCheckpointTest, HashingOnManyThreadsGivesTheManifestOneThreadGives) {
  std::vector<LocalChunk> one_chunks, many_chunks;
  absl::StatusOr<v1::Checkpoint> one = Describe((root_ / "step-1").string(), &one_chunks, 1);
  absl::StatusOr<v1::Checkpoint> many = Describe((root_ / "step-1").string(), &many_chunks, 4);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_EQ(one->SerializeAsString(), many->SerializeAsString());
  ASSERT_EQ(many->files_size(), 3);
  EXPECT_EQ(many->files(0).path(), "empty");
  EXPECT_EQ(many->files(0).chunks_size(), 0);
  EXPECT_EQ(many->files(1).path(), "model.bin");
  ASSERT_EQ(many->files(1).chunks_size(), 3);
  EXPECT_EQ(many->files(1).chunks(2), Sha256Hex(Bytes().substr(2 * kChunkBytes)));
  EXPECT_EQ(many->files(2).chunks(0), many->files(1).chunks(0));
  EXPECT_EQ(many->size_bytes(), 2 * Bytes().size());
  ASSERT_EQ(many_chunks.size(), 6u);
  EXPECT_EQ(many_chunks[2].offset, 2 * kChunkBytes);
  EXPECT_EQ(many_chunks[2].size, Bytes().size() - 2 * kChunkBytes);
  EXPECT_TRUE(many_chunks[2].last);
  EXPECT_FALSE(many_chunks[1].last);
}

TEST_F(LocalCheckpointTest, AFileThatChangesAfterItWasLaidOutIsRefused) {
  std::vector<LocalChunk> chunks;
  absl::StatusOr<v1::Checkpoint> laid = Layout((root_ / "step-1").string(), &chunks);
  ASSERT_TRUE(laid.ok()) << laid.status();
  ASSERT_EQ(chunks.size(), 6u);
  EXPECT_TRUE(chunks[0].sha256.empty()) << "nothing is read while laying out";
  fs::resize_file(root_ / "step-1" / "model.bin", kChunkBytes + 5);
  absl::Status shorter = HashChunks(chunks, 0, chunks.size(), 2);
  EXPECT_EQ(shorter.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shorter.message(), HasSubstr("shorter"));

  std::ofstream(root_ / "step-1" / "model.bin", std::ios::binary) << Bytes() << "more";
  absl::Status longer = HashChunks(chunks, 0, 3, 2);
  EXPECT_EQ(longer.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(longer.message(), HasSubstr("longer"));
  // A range that stops before the file's last chunk does not look past it.
  EXPECT_TRUE(HashChunks(chunks, 0, 2, 2).ok());
  EXPECT_EQ(chunks[0].sha256, Sha256Hex(Bytes().substr(0, kChunkBytes)));

  // A FIFO put in a file's place is refused, not waited on.
  fs::remove(root_ / "step-1" / "model.bin");
  ASSERT_EQ(mkfifo((root_ / "step-1" / "model.bin").c_str(), 0600), 0);
  absl::Status fifo = HashChunks(chunks, 0, 1, 1);
  EXPECT_EQ(fifo.code(), absl::StatusCode::kInvalidArgument) << fifo;
  EXPECT_THAT(fifo.message(), HasSubstr("no longer a plain file"));
}

}  // namespace
}  // namespace sched::checkpoint

namespace sched::checkpoint {
namespace {

// Found by fuzzing: a size near 2^64 wrapped to a small chunk count and was accepted.
TEST(CheckManifestTest, SizesThatWouldWrapAreRefused) {
  v1::Checkpoint m;
  m.set_name("step-1");
  v1::CheckpointFile* f = m.add_files();
  f->add_chunks(std::string(64, 'a'));
  f->set_size_bytes(UINT64_MAX);
  EXPECT_EQ(CheckManifest(m).code(), absl::StatusCode::kInvalidArgument);
  f->set_size_bytes(UINT64_MAX - kChunkBytes + 2);  // (size + chunk - 1) wraps to 0
  EXPECT_EQ(CheckManifest(m).code(), absl::StatusCode::kInvalidArgument);
  f->set_size_bytes(100);
  EXPECT_TRUE(CheckManifest(m).ok());
  // A chunk count that does not match the size is refused too (1 chunk for 5 MiB).
  f->set_size_bytes(5 << 20);
  EXPECT_EQ(CheckManifest(m).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sched::checkpoint
