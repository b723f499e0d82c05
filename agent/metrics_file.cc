#include "agent/metrics_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sched::agent {
namespace {

// How much of a bad pair a note quotes.
constexpr size_t kMaxQuotedBytes = 40;

// `text` as a note shows it: cut short, and escaped, since the file may hold anything.
std::string Shown(absl::string_view text) {
  if (text.size() <= kMaxQuotedBytes) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMaxQuotedBytes)), "...");
}

std::optional<int64_t> ParseStep(absl::string_view text) {
  // Digits only: SimpleAtoi would take a sign and spaces. 2^53 has 16 digits.
  if (text.empty() || text.size() > 16 || !std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return std::nullopt;
  }
  int64_t step;
  if (!absl::SimpleAtoi(text, &step) || step > kMaxMetricStep) return std::nullopt;
  return step;
}

bool IsMetricName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxMetricNameBytes ||
      !absl::ascii_isalpha(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
           c == '/' || c == '-';
  });
}

}  // namespace

absl::StatusOr<std::vector<MetricSample>> ParseMetricsLine(absl::string_view line,
                                                           int64_t line_number) {
  auto bad = [line_number](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics line ", line_number, " ignored: ", why));
  };
  if (line.size() > kMaxMetricsLineBytes) {
    return bad(absl::StrCat("longer than ", kMaxMetricsLineBytes, " bytes"));
  }
  const std::vector<absl::string_view> pairs =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (pairs.empty() || pairs[0][0] == '#') return std::vector<MetricSample>();
  std::optional<int64_t> step;
  std::vector<MetricSample> samples;
  for (absl::string_view pair : pairs) {
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) {
      return bad(absl::StrCat("\"", Shown(pair), "\" is not name=value"));
    }
    const absl::string_view name = pair.substr(0, eq);
    const absl::string_view value = pair.substr(eq + 1);
    if (name == "step") {
      if (step.has_value()) return bad("step given twice");
      step = ParseStep(value);
      if (!step.has_value()) {
        return bad(absl::StrCat("step=", Shown(value), " is not a whole number from 0 to 2^53"));
      }
      continue;
    }
    if (!IsMetricName(name)) {
      return bad(absl::StrCat("\"", Shown(name),
                              "\" is not a metric name (1 to 64 of A-Z a-z 0-9 _ . : / -, "
                              "starting with a letter)"));
    }
    double number;
    if (!absl::SimpleAtod(value, &number) || !std::isfinite(number)) {
      return bad(absl::StrCat(name, "=", Shown(value), " is not a finite number"));
    }
    if (std::any_of(samples.begin(), samples.end(),
                    [name](const MetricSample& s) { return s.name == name; })) {
      return bad(absl::StrCat(name, " given twice"));
    }
    if (samples.size() == kMaxMetricsPerLine) {
      return bad(absl::StrCat("more than ", kMaxMetricsPerLine, " metrics"));
    }
    samples.push_back({0, std::string(name), number});
  }
  if (!step.has_value()) return bad("no step=");
  for (MetricSample& s : samples) s.step = *step;
  return samples;
}

MetricsFile::MetricsFile(std::string path, size_t max_read_bytes)
    : path_(std::move(path)), max_read_bytes_(std::max(max_read_bytes, kMaxMetricsLineBytes + 1)) {}

MetricsFile::Read MetricsFile::ReadNew(bool final) {
  Read read;
  // O_NONBLOCK: a FIFO in the file's place must not hold the agent up (it is refused below).
  const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return read;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (st.st_dev != dev_ || st.st_ino != ino_ || st.st_size < offset_) {
      // A new file, or this one cut back: the job started over.
      dev_ = st.st_dev;
      ino_ = st.st_ino;
      offset_ = 0;
      lines_ = 0;
      skipping_line_ = false;
    }
    // Up to the size seen now: what the job appends meanwhile waits for the next call.
    size_t budget = final ? kMaxFinalReadBytes : max_read_bytes_;
    while (budget > 0 && ReadChunk(fd, st.st_size, final, budget, read)) {
    }
  }
  close(fd);
  return read;
}

bool MetricsFile::ReadChunk(int fd, off_t size, bool final, size_t& budget, Read& read) {
  if (offset_ >= size) return false;
  const size_t want = std::min({static_cast<size_t>(size - offset_), budget, max_read_bytes_});
  std::string buf(want, '\0');
  ssize_t n;
  do {
    n = pread(fd, buf.data(), want, offset_);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buf.resize(n);
  budget -= n;
  const bool at_end = offset_ + n >= size;
  const absl::string_view data(buf);
  size_t taken = 0;  // bytes of `data` done with
  for (size_t nl; (nl = data.find('\n', taken)) != absl::string_view::npos; taken = nl + 1) {
    if (skipping_line_) {
      skipping_line_ = false;  // the end of a line reported as too long
      continue;
    }
    TakeLine(data.substr(taken, nl - taken), read);
  }
  const absl::string_view tail = data.substr(taken);
  if (skipping_line_) {
    taken = data.size();
  } else if (tail.size() > kMaxMetricsLineBytes) {
    // Too long already: reported now, and the rest of it is passed over as it comes.
    TakeLine(tail, read);
    skipping_line_ = true;
    taken = data.size();
  } else if (final && at_end && !tail.empty()) {
    TakeLine(tail, read);
    taken = data.size();
  }
  // A partial line is read again next time, whole.
  offset_ += static_cast<off_t>(taken);
  return taken > 0;
}

void MetricsFile::TakeLine(absl::string_view line, Read& read) {
  absl::StatusOr<std::vector<MetricSample>> samples = ParseMetricsLine(line, ++lines_);
  if (!samples.ok()) {
    AddNote(std::string(samples.status().message()), read);
    return;
  }
  for (MetricSample& s : *samples) read.samples.push_back(std::move(s));
}

void MetricsFile::AddNote(std::string message, Read& read) {
  if (notes_ < kMaxNotes) {
    read.notes.push_back(absl::StrCat("[sched-agent: ", message, "]\n"));
  } else if (notes_ == kMaxNotes) {
    read.notes.push_back(
        absl::StrCat("[sched-agent: further bad lines in ", kMetricsFileName, " are not shown]\n"));
  }
  notes_ = std::min(notes_ + 1, kMaxNotes + 1);
}

}  // namespace sched::agent
