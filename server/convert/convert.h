#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "sched/v1/job_service.pb.h"
#include "sched/v1/storage.pb.h"
#include "sched/v1/types.pb.h"
#include "server/core/job.h"
#include "server/core/node.h"
#include "server/core/store.h"

// Conversions between the core's plain types and the sched.v1 messages, shared by the gRPC
// handlers and the RocksDB store so each mapping is written once.
namespace sched {

void TimeToProto(absl::Time t, google::protobuf::Timestamp* out);
absl::Time TimeFromProto(const google::protobuf::Timestamp& ts);

v1::PlacementPolicy PlacementPolicyToProto(PlacementPolicy p);
absl::StatusOr<PlacementPolicy> PlacementPolicyFromProto(v1::PlacementPolicy p);
v1::SpotPolicy SpotPolicyToProto(SpotPolicy p);
absl::StatusOr<SpotPolicy> SpotPolicyFromProto(v1::SpotPolicy p);
v1::JobState JobStateToProto(JobState s);
// INVALID_ARGUMENT for UNSPECIFIED or unknown values.
absl::StatusOr<JobState> JobStateFromProto(v1::JobState s);

// Empties the value of every secret variable in `job`'s spec: what the API shows.
void RedactSecrets(v1::Job* job);

void JobSpecToProto(const JobSpec& spec, v1::JobSpec* out);
// Structural checks only (units, ranges that the proto types allow but the core's can't hold);
// the rules live in ValidateAndDefaultJobSpec.
absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& spec);

void DecisionToProto(const Decision& d, v1::Decision* out);
// INVALID_ARGUMENT for a verdict or blocker name this version does not know.
absl::StatusOr<Decision> DecisionFromProto(const v1::Decision& d);
void JobToProto(const Job& job, v1::Job* out);
absl::StatusOr<Job> JobFromProto(const v1::Job& job);

void PriceScheduleToProto(const cost::PriceSchedule& schedule, v1::PriceSchedule* out);
// INVALID_ARGUMENT for a schedule cost::ValidatePriceSchedule refuses.
absl::StatusOr<cost::PriceSchedule> PriceScheduleFromProto(const v1::PriceSchedule& in);
void CapabilitiesToProto(const NodeCapabilities& caps, v1::Capabilities* out);
absl::StatusOr<NodeCapabilities> CapabilitiesFromProto(const v1::Capabilities& caps);
void NodeToProto(const Node& node, v1::Node* out);
v1::RentalPhase RentalPhaseToProto(RentalPhase p);
// INVALID_ARGUMENT for UNSPECIFIED or unknown values.
absl::StatusOr<RentalPhase> RentalPhaseFromProto(v1::RentalPhase p);
// The rental as the API shows it; `cost_so_far` is the Node view's.
void RentalToProto(const Rental& rental, double cost_so_far, v1::Rental* out);
// What RentalToProto wrote, as stored (the ledger fields are kept beside it).
absl::StatusOr<Rental> RentalFromProto(const v1::Rental& in);
// A node's durable record as the store keeps it, and back.
void NodeRecordToStored(const NodeRecord& record, v1::StoredNode* out);
absl::StatusOr<NodeRecord> NodeRecordFromStored(const v1::StoredNode& stored);

v1::LogStream LogStreamToProto(LogStreamKind s);
LogStreamKind LogStreamFromProto(v1::LogStream s);

}  // namespace sched
