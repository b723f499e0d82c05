#pragma once

// The metrics a job reports by appending lines to $SCHED_METRICS_FILE (<job folder>/.sched-metrics,
// which the job creates; the agent only reads it).
//
// One report per line, ended by '\n':
//
//   step=<whole number> <name>=<value> [<name>=<value> ...]
//
// Pairs are separated by spaces or tabs ('\r' counts as a space: "\r\n" ends a line too), in any
// order; the name is what comes before the first '='.
//   - step is required: a whole number from 0 to 2^53 (9007199254740992), digits only.
//   - every other pair is a metric: its name 1 to 64 characters of A-Z a-z 0-9 _ . : / -,
//     starting with a letter, given once per line; its value a finite number as
//     absl::SimpleAtod reads it ("0.5", "-3", "1e-4"; not "nan" or "inf").
//   - at most 32 metrics a line; a line of more than 4096 bytes (without its '\n') is bad.
// Skipped without a word: empty lines, lines of only spaces, lines whose first non-space
// character is '#', and lines with step= and no metric. All metrics of a line share its step.
//
// A bad line is skipped whole, and a note naming its number and what is wrong goes to the job's
// stderr log (at most kMaxNotes per file, then one saying that further ones are not shown). A
// last line without its '\n' is held back until the '\n' arrives, or read as it is once the job
// has ended (ReadNew(final=true)).

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sched::agent {

// The environment variable that names the file, and the file's name in the job's folder.
inline constexpr char kMetricsFileEnv[] = "SCHED_METRICS_FILE";
inline constexpr char kMetricsFileName[] = ".sched-metrics";

inline constexpr size_t kMaxMetricsLineBytes = 4096;
inline constexpr size_t kMaxMetricsPerLine = 32;
inline constexpr size_t kMaxMetricNameBytes = 64;
inline constexpr int64_t kMaxMetricStep = int64_t{1} << 53;  // the last exact double

// One value of one metric at one step.
struct MetricSample {
  int64_t step = 0;
  std::string name;
  double value = 0;
};

// The metrics of one line (without its '\n'); `line_number` (from 1) is for the message. An
// empty vector for a line that is skipped without a word; INVALID_ARGUMENT for a bad line, with
// the message "metrics line N ignored: <why>".
absl::StatusOr<std::vector<MetricSample>> ParseMetricsLine(absl::string_view line,
                                                           int64_t line_number);

// Follows one metrics file: each ReadNew() returns what complete lines were appended since the
// last. Not thread-safe; one per attempt.
class MetricsFile {
 public:
  static constexpr size_t kMaxReadBytes = 1 << 20;  // per ReadNew(false)
  // The last read, once the job has ended, takes up to this much more; the rest is not read.
  static constexpr size_t kMaxFinalReadBytes = 4 << 20;
  static constexpr int kMaxNotes = 10;

  // `max_read_bytes` (at least kMaxMetricsLineBytes + 1) is for tests.
  explicit MetricsFile(std::string path, size_t max_read_bytes = kMaxReadBytes);

  struct Read {
    std::vector<MetricSample> samples;  // in file order
    // Lines for the job's stderr log, each "[sched-agent: ...]\n".
    std::vector<std::string> notes;
  };

  // What complete lines were appended since the last call: at most max_read_bytes of the file;
  // with `final` (the job has ended, nothing more will come) up to kMaxFinalReadBytes, and the
  // last line even without its '\n'. A file that does not exist (yet) or cannot be read reads
  // as empty. When the file became shorter than what was read, or was replaced by another, it
  // is read again from its start (its line numbers too).
  Read ReadNew(bool final);

  const std::string& path() const { return path_; }

 private:
  // Takes the complete lines in the next piece of the file (up to `size`, at most `budget`
  // bytes, which it lessens); false when there was nothing more to take.
  bool ReadChunk(int fd, off_t size, bool final, size_t& budget, Read& read);
  void TakeLine(absl::string_view line, Read& read);
  void AddNote(std::string message, Read& read);

  const std::string path_;
  const size_t max_read_bytes_;
  off_t offset_ = 0;  // of the first byte not yet taken
  dev_t dev_ = 0;     // of the file read so far (0: none yet)
  ino_t ino_ = 0;
  int64_t lines_ = 0;           // lines taken so far
  bool skipping_line_ = false;  // in a line too long to keep, reported already
  int notes_ = 0;               // notes given, up to kMaxNotes + 1 (the "not shown" one)
};

}  // namespace sched::agent
