#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "sched/v1/types.pb.h"

// How jobs and nodes look in `get` tables, and the small renderings `describe` shares.
namespace sched::client {

// "PENDING" for JOB_STATE_PENDING; "READY" for NODE_STATE_READY.
std::string ShortJobState(sched::v1::JobState state);
std::string ShortNodeState(sched::v1::NodeState state);

// `s`, or "<none>" when empty.
std::string OrNone(const std::string& s);
// SUCCEEDED and FAILED: the states in which Job.exit_code means something.
bool HasExitCode(sched::v1::JobState state);

// nullopt for an unset timestamp.
std::optional<absl::Time> FromTimestamp(const google::protobuf::Timestamp& ts);
// FormatAge(now - ts), or "<unknown>" for an unset timestamp.
std::string AgeOf(const google::protobuf::Timestamp& ts, absl::Time now);
// "in 5m30s" for a time after `now`, "5m30s ago" otherwise.
std::string FromNow(absl::Time t, absl::Time now);
// "2026-11-27T08:00:00Z (in 1h)" (UTC), "2026-11-27T08:00:00Z (3h20m ago)", or "<none>" for an
// unset timestamp.
std::string TimeFromNow(const google::protobuf::Timestamp& ts, absl::Time now);

// "NVIDIA H100 80GB HBM3" -> "H100", "NVIDIA GeForce RTX 3080" -> "RTX3080".
std::string ShortGpuModel(absl::string_view model);
// A job's GPU request: "0", "2", "1xH100|A100", "1xany 24GB", "2xH100 24GB".
std::string GpuRequestSummary(const sched::v1::Resources& resources);
// A node's GPUs grouped by model and memory: "2xH100 80GB", "1xRTX3080 10GB,1xT4 15GB", "-";
// "2xRTX4090 24GB*" when they are advertised.
std::string NodeGpuSummary(const sched::v1::Capabilities& capabilities);
// Whether Capabilities.advertised names `field` ("gpus", "provider").
bool IsAdvertised(const sched::v1::Capabilities& capabilities, absl::string_view field);
// The mark tables put after an advertised value, and the line explaining it under the table.
inline constexpr char kAdvertisedMark[] = "*";
inline constexpr char kAdvertisedFootnote[] =
    "* advertised: given to the agent (--advertise_gpus, --provider or its config), not detected";
// "$0.40", or "-" for a node with no hourly price.
std::string FormatPrice(double price_per_hour);
// "0,1", or "-" for none.
std::string FormatIndexes(const google::protobuf::RepeatedField<uint32_t>& indexes);

// Columns: ID NAME PROJECT STATE NODE ATTEMPT AGE; wide adds PRIORITY GPUS CPUS MEMORY EXIT
// MESSAGE.
std::vector<std::string> JobTableHeader(bool wide);
std::vector<std::string> JobTableRow(const sched::v1::Job& job, bool wide, absl::Time now);
// Fixed widths wide enough for most rows, for watch output printed a row at a time.
std::vector<size_t> JobWatchWidths(bool wide);
void PrintJobTable(const google::protobuf::RepeatedPtrField<sched::v1::Job>& jobs, bool wide,
                   absl::Time now, std::ostream& out);

// Columns: NAME STATE CPUS MEMORY GPUS PROVIDER PRICE/H JOBS AGE; wide adds SPOT REGION
// INSTANCE-TYPE ALLOC-CPUS ALLOC-MEMORY ALLOC-GPUS HEARTBEAT. Advertised GPUS and PROVIDER values
// end in kAdvertisedMark.
std::vector<std::string> NodeTableHeader(bool wide);
std::vector<std::string> NodeTableRow(const sched::v1::Node& node, bool wide, absl::Time now);
// The table, then kAdvertisedFootnote when a value in it is marked.
void PrintNodeTable(const google::protobuf::RepeatedPtrField<sched::v1::Node>& nodes, bool wide,
                    absl::Time now, std::ostream& out);

}  // namespace sched::client
