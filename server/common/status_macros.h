#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define SCHED_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::absl::Status sched_status_ = (expr);          \
    if (!sched_status_.ok()) return sched_status_;  \
  } while (0)

#define SCHED_STATUS_CONCAT_INNER_(a, b) a##b
#define SCHED_STATUS_CONCAT_(a, b) SCHED_STATUS_CONCAT_INNER_(a, b)

// `lhs = value of expr`, or returns expr's status from the enclosing function.
#define SCHED_ASSIGN_OR_RETURN(lhs, expr) \
  SCHED_ASSIGN_OR_RETURN_IMPL_(SCHED_STATUS_CONCAT_(sched_statusor_, __LINE__), lhs, expr)

#define SCHED_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
