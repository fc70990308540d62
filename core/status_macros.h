// Status-propagation macros for absl::Status / absl::StatusOr.
//
// Debian 12's Abseil (20220623) ships neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN,
// so regd defines its own. Both evaluate their argument exactly once.
#ifndef REGD_CORE_STATUS_MACROS_H_
#define REGD_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define REGD_CONCAT_INNER_(a, b) a##b
#define REGD_CONCAT_(a, b) REGD_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status regd_status_ = (expr);        \
    if (!regd_status_.ok()) return regd_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the StatusOr `expr`; on error returns
// its status, otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  REGD_ASSIGN_OR_RETURN_IMPL_(REGD_CONCAT_(regd_statusor_, __LINE__), lhs, expr)

#define REGD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

#endif  // REGD_CORE_STATUS_MACROS_H_
