// The metrics file format (ParseMetricsLine) and MetricsFile's reading of a file as it grows.

#include "agent/metrics_file.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/test_util.h"
#include "tests/testing/status_matchers.h"

namespace sched::agent {

bool operator==(const MetricSample& a, const MetricSample& b) {
  return a.step == b.step && a.name == b.name && a.value == b.value;
}

void PrintTo(const MetricSample& s, std::ostream* os) {
  *os << "{" << s.step << ", " << s.name << "=" << s.value << "}";
}

namespace {

using ::sched::agent::testing::MakeTempDir;
using ::sched::testing::IsOkAndHolds;
using ::sched::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

MetricSample Sample(int64_t step, std::string name, double value) {
  return MetricSample{step, std::move(name), value};
}

// ---- ParseMetricsLine ----

TEST(ParseMetricsLineTest, SeveralMetricsShareTheStep) {
  EXPECT_THAT(ParseMetricsLine("step=3 loss=0.5 acc=0.9 lr=1e-4", 1),
              IsOkAndHolds(ElementsAre(Sample(3, "loss", 0.5), Sample(3, "acc", 0.9),
                                       Sample(3, "lr", 1e-4))));
}

TEST(ParseMetricsLineTest, StepAnywhereTabsAndCarriageReturn) {
  EXPECT_THAT(ParseMetricsLine("  loss=-2.5\tstep=7   val/top-1:acc=+3\r", 1),
              IsOkAndHolds(ElementsAre(Sample(7, "loss", -2.5), Sample(7, "val/top-1:acc", 3))));
}

TEST(ParseMetricsLineTest, StepLimits) {
  EXPECT_THAT(ParseMetricsLine("step=0 x=1", 1), IsOkAndHolds(ElementsAre(Sample(0, "x", 1))));
  EXPECT_THAT(ParseMetricsLine("step=9007199254740992 x=1", 1),
              IsOkAndHolds(ElementsAre(Sample(int64_t{1} << 53, "x", 1))));
  EXPECT_THAT(ParseMetricsLine("step=007 x=1", 1), IsOkAndHolds(ElementsAre(Sample(7, "x", 1))));
}

TEST(ParseMetricsLineTest, NameLimits) {
  const std::string longest = "a" + std::string(63, 'b');
  EXPECT_THAT(ParseMetricsLine(absl::StrCat("step=1 ", longest, "=2 A.b_c=3"), 1),
              IsOkAndHolds(ElementsAre(Sample(1, longest, 2), Sample(1, "A.b_c", 3))));
}

TEST(ParseMetricsLineTest, ThirtyTwoMetricsAndAFullLengthLineAreFine) {
  std::string line = "step=1";
  for (int i = 0; i < 32; ++i) absl::StrAppend(&line, " m", i, "=", i);
  absl::StatusOr<std::vector<MetricSample>> got = ParseMetricsLine(line, 1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 32);

  const std::string full = "step=1 x=1" + std::string(kMaxMetricsLineBytes - 10, ' ');
  ASSERT_EQ(full.size(), kMaxMetricsLineBytes);
  EXPECT_THAT(ParseMetricsLine(full, 1), IsOkAndHolds(ElementsAre(Sample(1, "x", 1))));
}

TEST(ParseMetricsLineTest, SkippedWithoutAWord) {
  for (const char* line :
       {"", "   ", "\t\r", "# a comment", "  #step=1 x=1", "#", "step=5", " step=5 "}) {
    EXPECT_THAT(ParseMetricsLine(line, 1), IsOkAndHolds(IsEmpty())) << "line: " << line;
  }
}

struct BadLine {
  std::string line;
  std::string why;
};

TEST(ParseMetricsLineTest, BadLinesSayWhy) {
  const std::string name65 = std::string(65, 'a');
  std::string many = "step=1";
  for (int i = 0; i < 33; ++i) absl::StrAppend(&many, " m", i, "=1");
  const std::vector<BadLine> cases = {
      {"loss=0.5", "no step="},
      {"step=abc loss=1", "step=abc is not a whole number from 0 to 2^53"},
      {"step= loss=1", "step= is not a whole number from 0 to 2^53"},
      {"step=-1 loss=1", "step=-1 is not a whole number from 0 to 2^53"},
      {"step=+1 loss=1", "step=+1 is not a whole number from 0 to 2^53"},
      {"step=1.5 loss=1", "step=1.5 is not a whole number from 0 to 2^53"},
      {"step=1e3 loss=1", "step=1e3 is not a whole number from 0 to 2^53"},
      {"step=9007199254740993 loss=1",
       "step=9007199254740993 is not a whole number from 0 to 2^53"},
      {"step=99999999999999999999 loss=1",
       "step=99999999999999999999 is not a whole number from 0 to 2^53"},
      {"step=1 step=2 loss=1", "step given twice"},
      {"step=1 loss", "\"loss\" is not name=value"},
      {"step=1 loss=1 =2",
       "\"\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, starting with a letter)"},
      {"step=1 9loss=1",
       "\"9loss\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, starting with a "
       "letter)"},
      {"step=1 _loss=1",
       "\"_loss\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, starting with a "
       "letter)"},
      {"step=1 lo$s=1",
       "\"lo$s\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, starting with a "
       "letter)"},
      {absl::StrCat("step=1 ", name65, "=1"),
       absl::StrCat("\"", std::string(40, 'a'),
                    "...\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, starting "
                    "with a letter)")},
      {"step=1 loss=abc", "loss=abc is not a finite number"},
      {"step=1 loss=", "loss= is not a finite number"},
      {"step=1 loss=nan", "loss=nan is not a finite number"},
      {"step=1 loss=NaN", "loss=NaN is not a finite number"},
      {"step=1 loss=inf", "loss=inf is not a finite number"},
      {"step=1 loss=-infinity", "loss=-infinity is not a finite number"},
      {"step=1 loss=1e999", "loss=1e999 is not a finite number"},
      {"step=1 loss=0.5x", "loss=0.5x is not a finite number"},
      {"step=1 loss=1=2", "loss=1=2 is not a finite number"},
      {"step=1 loss=\x01\xff", "loss=\\x01\\xff is not a finite number"},
      {"step=1 loss=1 acc=2 loss=3", "loss given twice"},
      {many, "more than 32 metrics"},
      {"step=1 x=1" + std::string(kMaxMetricsLineBytes - 9, ' '), "longer than 4096 bytes"},
  };
  for (const BadLine& c : cases) {
    EXPECT_THAT(ParseMetricsLine(c.line, 12),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("metrics line 12 ignored: ", c.why)))
        << "line: " << c.line;
  }
}

// ---- MetricsFile ----

class MetricsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("metrics_file_test");
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/" + kMetricsFileName;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Append(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << text;
  }
  void Replace(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(MetricsFileTest, AFileThatDoesNotExistYetReadsAsEmpty) {
  MetricsFile file(path_);
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, IsEmpty());
  EXPECT_THAT(read.notes, IsEmpty());
  read = file.ReadNew(true);
  EXPECT_THAT(read.samples, IsEmpty());

  Append("step=1 loss=0.5\n");
  EXPECT_THAT(file.ReadNew(false).samples, ElementsAre(Sample(1, "loss", 0.5)));
}

TEST_F(MetricsFileTest, GoodLinesCommentsAndBlankLines) {
  MetricsFile file(path_);
  Append("# epoch 1\n\nstep=1 loss=0.5 acc=0.8\n   \nstep=2 loss=0.25 acc=0.9\nstep=3\n");
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(1, "loss", 0.5), Sample(1, "acc", 0.8),
                                        Sample(2, "loss", 0.25), Sample(2, "acc", 0.9)));
  EXPECT_THAT(read.notes, IsEmpty());
  // Nothing new: nothing read again.
  read = file.ReadNew(false);
  EXPECT_THAT(read.samples, IsEmpty());
  EXPECT_THAT(read.notes, IsEmpty());
}

TEST_F(MetricsFileTest, AppendedInPiecesAcrossReads) {
  MetricsFile file(path_);
  Append("step=1 lo");
  EXPECT_THAT(file.ReadNew(false).samples, IsEmpty());
  Append("ss=0.5");
  EXPECT_THAT(file.ReadNew(false).samples, IsEmpty());
  Append("\nstep=2 loss=0.4\nstep=3 ");
  EXPECT_THAT(file.ReadNew(false).samples,
              ElementsAre(Sample(1, "loss", 0.5), Sample(2, "loss", 0.4)));
  Append("loss=0.3\n");
  EXPECT_THAT(file.ReadNew(false).samples, ElementsAre(Sample(3, "loss", 0.3)));
  EXPECT_THAT(file.ReadNew(false).samples, IsEmpty());
}

TEST_F(MetricsFileTest, APartialLastLineWaitsForItsNewlineOrTheEnd) {
  MetricsFile file(path_);
  Append("step=1 loss=0.5\nstep=2 loss=0.25");
  EXPECT_THAT(file.ReadNew(false).samples, ElementsAre(Sample(1, "loss", 0.5)));
  EXPECT_THAT(file.ReadNew(false).samples, IsEmpty());
  // The job has ended: its last line counts without the newline.
  EXPECT_THAT(file.ReadNew(true).samples, ElementsAre(Sample(2, "loss", 0.25)));
  EXPECT_THAT(file.ReadNew(true).samples, IsEmpty());
}

TEST_F(MetricsFileTest, AFinalReadTakesCompleteAndPartialLinesAtOnce) {
  MetricsFile file(path_);
  Append("step=1 a=1\nstep=2 a=2\nstep=3 a=3");
  EXPECT_THAT(file.ReadNew(true).samples,
              ElementsAre(Sample(1, "a", 1), Sample(2, "a", 2), Sample(3, "a", 3)));
}

TEST_F(MetricsFileTest, BadLinesAreSkippedWithANoteNamingTheLine) {
  MetricsFile file(path_);
  Append("# header\nstep=1 loss=0.5\nstep=abc loss=1\n\nstep=2 loss=nan\nstep=3 loss=0.1\n");
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(1, "loss", 0.5), Sample(3, "loss", 0.1)));
  EXPECT_THAT(
      read.notes,
      ElementsAre(
          "[sched-agent: metrics line 3 ignored: step=abc is not a whole number from 0 to 2^53]\n",
          "[sched-agent: metrics line 5 ignored: loss=nan is not a finite number]\n"));
  // Line numbers go on across reads, and a bad partial line read at the end is noted too.
  Append("loss=1\nstep=4 acc");
  read = file.ReadNew(false);
  EXPECT_THAT(read.notes, ElementsAre("[sched-agent: metrics line 7 ignored: no step=]\n"));
  read = file.ReadNew(true);
  EXPECT_THAT(read.notes,
              ElementsAre("[sched-agent: metrics line 8 ignored: \"acc\" is not name=value]\n"));
}

TEST_F(MetricsFileTest, AtMostTenNotesThenOneSayingTheRestAreNotShown) {
  MetricsFile file(path_);
  for (int i = 0; i < 8; ++i) Append("oops\n");
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_EQ(read.notes.size(), 8);
  for (int i = 0; i < 5; ++i) Append("oops\n");
  Append("step=1 x=1\n");
  read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(1, "x", 1)));
  ASSERT_EQ(read.notes.size(), 3);
  EXPECT_EQ(read.notes[0], "[sched-agent: metrics line 9 ignored: \"oops\" is not name=value]\n");
  EXPECT_EQ(read.notes[1], "[sched-agent: metrics line 10 ignored: \"oops\" is not name=value]\n");
  EXPECT_EQ(read.notes[2], "[sched-agent: further bad lines in .sched-metrics are not shown]\n");
  Append("oops\nstep=2 x=2\n");
  read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(2, "x", 2)));
  EXPECT_THAT(read.notes, IsEmpty());
}

TEST_F(MetricsFileTest, ALongLineIsReportedOnceAndPassedOverAsItComes) {
  MetricsFile file(path_);
  Append("step=1 x=1\nstep=2 y=" + std::string(6000, '1'));
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(1, "x", 1)));
  EXPECT_THAT(read.notes,
              ElementsAre("[sched-agent: metrics line 2 ignored: longer than 4096 bytes]\n"));
  Append(std::string(6000, '2'));
  read = file.ReadNew(false);
  EXPECT_THAT(read.samples, IsEmpty());
  EXPECT_THAT(read.notes, IsEmpty());
  Append("2\nstep=3 x=3\nbad\n");
  read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(3, "x", 3)));
  EXPECT_THAT(read.notes,
              ElementsAre("[sched-agent: metrics line 4 ignored: \"bad\" is not name=value]\n"));
}

TEST_F(MetricsFileTest, ACompleteLongLineIsBadToo) {
  MetricsFile file(path_);
  Append("step=1 x=" + std::string(4100, '1') + "\nstep=2 x=2\n");
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(2, "x", 2)));
  EXPECT_THAT(read.notes,
              ElementsAre("[sched-agent: metrics line 1 ignored: longer than 4096 bytes]\n"));
}

TEST_F(MetricsFileTest, ReadsAtMostItsLimitPerCallAndGoesOnWhereItStopped) {
  constexpr size_t kLimit = 8192;
  MetricsFile file(path_, kLimit);
  std::string text;
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&text, "step=", i, " loss=", i, "\n");
  Append(text);
  ASSERT_GT(text.size(), 4 * kLimit);
  std::vector<MetricSample> all;
  int reads = 0;
  while (true) {
    MetricsFile::Read read = file.ReadNew(false);
    if (read.samples.empty()) break;
    ++reads;
    EXPECT_LT(read.samples.size(), kLimit / 10);
    all.insert(all.end(), read.samples.begin(), read.samples.end());
  }
  EXPECT_GT(reads, 4);
  ASSERT_EQ(all.size(), 2000);
  for (int i = 0; i < 2000; ++i) EXPECT_EQ(all[i], Sample(i, "loss", i));
}

TEST_F(MetricsFileTest, AFinalReadGoesPastThePerCallLimit) {
  MetricsFile file(path_, 8192);
  std::string text;
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&text, "step=", i, " loss=", i, "\n");
  Append(text + "step=2000 loss=2000");
  EXPECT_EQ(file.ReadNew(true).samples.size(), 2001);
}

TEST_F(MetricsFileTest, AShorterFileIsReadAgainFromItsStart) {
  MetricsFile file(path_);
  Append("step=1 loss=0.5\nstep=2 loss=0.4\n");
  EXPECT_EQ(file.ReadNew(false).samples.size(), 2);
  Replace("bad\nstep=1 loss=0.9\n");
  MetricsFile::Read read = file.ReadNew(false);
  EXPECT_THAT(read.samples, ElementsAre(Sample(1, "loss", 0.9)));
  EXPECT_THAT(read.notes,
              ElementsAre("[sched-agent: metrics line 1 ignored: \"bad\" is not name=value]\n"));
}

TEST_F(MetricsFileTest, AReplacedFileIsReadFromItsStart) {
  MetricsFile file(path_);
  Append("step=1 loss=0.5\n");
  EXPECT_EQ(file.ReadNew(false).samples.size(), 1);
  {
    std::ofstream out(path_ + ".new", std::ios::binary);
    out << "step=7 loss=0.7\nstep=8 loss=0.8\n";
  }
  std::filesystem::rename(path_ + ".new", path_);
  EXPECT_THAT(file.ReadNew(false).samples,
              ElementsAre(Sample(7, "loss", 0.7), Sample(8, "loss", 0.8)));
}

TEST_F(MetricsFileTest, SomethingElseThanAFileReadsAsEmpty) {
  std::filesystem::create_directory(path_);
  MetricsFile dir(path_);
  EXPECT_THAT(dir.ReadNew(true).samples, IsEmpty());
  std::filesystem::remove(path_);
  // A FIFO nobody writes to must not block the reader.
  ASSERT_EQ(mkfifo(path_.c_str(), 0600), 0);
  MetricsFile fifo(path_);
  MetricsFile::Read read = fifo.ReadNew(true);
  EXPECT_THAT(read.samples, IsEmpty());
  EXPECT_THAT(read.notes, IsEmpty());
}

}  // namespace
}  // namespace sched::agent
