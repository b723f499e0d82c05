#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sched::client {

// Parses a byte size as written in job.yaml: a plain integer is bytes; otherwise a number
// (fractions allowed) and a unit. Decimal units: K/KB, M/MB, G/GB, T/TB (powers of 1000);
// binary units: Ki/KiB, Mi/MiB, Gi/GiB, Ti/TiB (powers of 1024); B is bytes. Units ignore case.
// "24GB" = 24e9 bytes, so a 24 GiB card satisfies it. INVALID_ARGUMENT (reason only, no key)
// for anything else, negative values and values past int64.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

// The largest unit that gives a whole number ("24GB", "512MiB", "2KiB"), else one decimal in
// decimal units ("68.7GB", "1.5KB"); under 1000 bytes "512B". 0 gives "0".
std::string FormatBytes(int64_t bytes);

// GPU memory the way cards are sold: whole GiB written "GB" (an 81559 MiB H100 is "80GB").
// Under 1 GiB falls back to FormatBytes.
std::string FormatGpuMemory(int64_t bytes);

// CPU cores without trailing zeros: 2, 0.5, 1.25.
std::string FormatCpus(double cpus);

// A positive, finite duration as written on the command line: Go's syntax as absl::ParseDuration
// takes it ("90m", "1h30m", "500ms") or whole days ("7d"). nullopt for anything else, zero and
// negative durations included.
std::optional<absl::Duration> ParsePositiveDuration(absl::string_view text);

// Age in kubectl's manner: 45s, 5m30s, 45m, 3h20m, 20h, 2d5h, 45d, 2y30d. Negative ages
// (clock skew) print as 0s.
std::string FormatAge(absl::Duration age);

}  // namespace sched::client
