// How `schedctl checkpoints` and `checkpoint get` print checkpoints.

#include "client/checkpoint_commands.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/sample_resources.h"

namespace sched::client {
namespace {

using ::testing::ElementsAre;
using testing::kNow;
using testing::SampleCheckpoint;

TEST(CheckpointTable, AlignsTheColumnsOldestFirst) {
  std::ostringstream out;
  PrintCheckpointTable(testing::TwoCheckpoints().checkpoints(), kNow, out);
  EXPECT_EQ(out.str(),
            "SEQ   NAME          ATTEMPT   NODE     SIZE     FILES   AGE\n"
            "4     step-000240   1         vast-1   13.4KB   1       3m10s\n"
            "5     step-000260   2         ws1      4MiB     2       3h20m\n");
}

TEST(CheckpointTable, RowInHumanUnits) {
  EXPECT_THAT(CheckpointTableHeader(),
              ElementsAre("SEQ", "NAME", "ATTEMPT", "NODE", "SIZE", "FILES", "AGE"));
  EXPECT_THAT(
      CheckpointTableRow(
          SampleCheckpoint(12, "state.json", 3, "ws1", 2'500'000'000, 40, absl::Hours(50)), kNow),
      ElementsAre("12", "state.json", "3", "ws1", "2.5GB", "40", "2d2h"));
}

TEST(CheckpointTable, MissingValuesAreMarked) {
  sched::v1::Checkpoint c = SampleCheckpoint(1, "empty", 1, "", 0, 0, absl::Seconds(5));
  c.clear_create_time();
  EXPECT_THAT(CheckpointTableRow(c, kNow),
              ElementsAre("1", "empty", "1", "<none>", "0", "0", "<unknown>"));
  // A commit stamped after `now` (clock skew) reads 0s, as everywhere.
  EXPECT_EQ(
      CheckpointTableRow(SampleCheckpoint(2, "b", 1, "ws1", 1, 1, -absl::Seconds(30)), kNow).back(),
      "0s");
}

TEST(DownloadSummary, NamesSeqSizeFilesAndPath) {
  EXPECT_EQ(
      DownloadSummary(SampleCheckpoint(3, "step-000120", 1, "ws1", 13'800, 2, absl::Seconds(1)),
                      "./step-000120"),
      "checkpoint step-000120 (#3, 13.8KB, 2 files) -> ./step-000120\n");
  EXPECT_EQ(DownloadSummary(SampleCheckpoint(17, "state.json", 1, "ws1", 512, 1, absl::Seconds(1)),
                            "/tmp/ckpt/state.json"),
            "checkpoint state.json (#17, 512B, 1 file) -> /tmp/ckpt/state.json\n");
}

}  // namespace
}  // namespace sched::client
