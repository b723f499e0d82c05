#pragma once
// Force-included into every file of a SCHED_FUZZ build (tests/fuzz/CMakeLists.txt). With clang,
// Abseil checks absl::StrFormat's format at compile time and refuses one that is not a constant
// (server/cost/price_schedule.cc picks between two literals with ?:), which gcc lets through.
// Dropping the check here keeps the product code as gcc builds it; the formats still run.
#include "absl/strings/internal/str_format/checker.h"
#undef ABSL_INTERNAL_ENABLE_FORMAT_CHECKER
