// A job's secret values never reach its logs, however its output is cut into pieces.
#include "agent/secret_scrubber.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sched::agent {
namespace {

using Secrets = std::vector<std::pair<std::string, std::string>>;

// Feeds `text` cut at `cuts` (positions), then flushes: all that came out.
std::string Through(SecretScrubber& s, const std::string& text, std::vector<size_t> cuts) {
  std::string out;
  size_t from = 0;
  cuts.push_back(text.size());
  for (size_t cut : cuts) {
    out += s.Feed(absl::string_view(text).substr(from, cut - from));
    from = cut;
  }
  return out + s.Flush();
}

TEST(SecretScrubberTest, ReplacesEveryOccurrenceWithTheName) {
  SecretScrubber s(Secrets{{"HF_TOKEN", "hf_abcdef123"}, {"DB_PASSWORD", "s3cr3t!"}});
  EXPECT_EQ(Through(s, "token=hf_abcdef123 pw=s3cr3t! again hf_abcdef123\n", {}),
            "token=[secret HF_TOKEN] pw=[secret DB_PASSWORD] again [secret HF_TOKEN]\n");
}

TEST(SecretScrubberTest, AValueSplitAcrossPiecesAtAnyPointIsStillReplaced) {
  const std::string text = "xx hf_abcdef123 yy";
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); ++b) {
      SecretScrubber s(Secrets{{"HF_TOKEN", "hf_abcdef123"}});
      EXPECT_EQ(Through(s, text, {a, b}), "xx [secret HF_TOKEN] yy") << a << " " << b;
    }
  }
}

TEST(SecretScrubberTest, HoldsBackOnlyWhatMayBeginASecretAndFlushesIt) {
  SecretScrubber s(Secrets{{"K", "abcd"}});
  EXPECT_EQ(s.Feed("progress 10% ab"), "progress 10% ");  // "ab" may begin "abcd"
  EXPECT_EQ(s.Feed("x"), "abx");                          // it did not
  EXPECT_EQ(s.Feed("abc"), "");
  EXPECT_EQ(s.Flush(), "abc");  // the output ended there: it was not the secret
  // Repeats inside a would-be match: "aabcd" holds "a", then finds the value one byte on.
  EXPECT_EQ(Through(s, "aabcd", {1, 2, 3, 4}), "a[secret K]");
}

TEST(SecretScrubberTest, ShortValuesAreNotLookedForAndNoSecretsPassEverything) {
  SecretScrubber short_values(Secrets{{"FLAG", "on"}, {"N", "1"}});
  EXPECT_FALSE(short_values.active());
  EXPECT_EQ(short_values.Feed("on 1 on"), "on 1 on");
  SecretScrubber none(Secrets{});
  EXPECT_EQ(none.Feed("anything"), "anything");
}

TEST(SecretScrubberTest, AValueInsideAnotherIsReplacedWhole) {
  SecretScrubber s(Secrets{{"SHORT", "pass"}, {"LONG", "password123"}});
  EXPECT_EQ(Through(s, "password123 pass", {}), "[secret LONG] [secret SHORT]");
}

}  // namespace
}  // namespace sched::agent
