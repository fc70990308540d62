// regdctl's exit statuses and error lines: the one place a status becomes a
// process exit code. Pure functions; thread-safe.
//
//   0   OK
//   1   CANCELLED (130 when regdctl itself was interrupted by SIGINT/SIGTERM)
//   2   usage error (bad command line)
//   3..16  the gRPC code's own number: INVALID_ARGUMENT 3, DEADLINE_EXCEEDED 4,
//       NOT_FOUND 5, ALREADY_EXISTS 6, PERMISSION_DENIED 7, RESOURCE_EXHAUSTED 8,
//       FAILED_PRECONDITION 9, ABORTED 10, OUT_OF_RANGE 11, UNIMPLEMENTED 12,
//       INTERNAL 13, UNAVAILABLE 14, DATA_LOSS 15, UNAUTHENTICATED 16
//   17  UNKNOWN (gRPC's 2 is taken by usage errors)
//
// Local failures (a file that cannot be read, a digest that does not match)
// are statuses too, with the code the errno or the check implies.
#ifndef REGD_CLI_EXIT_CODES_H_
#define REGD_CLI_EXIT_CODES_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace regdctl {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

// The canonical upper-case name ("NOT_FOUND").
std::string CodeName(absl::StatusCode code);
// The exit status for a failed (or OK) status, per the table above.
int ExitCodeFor(const absl::Status& status);
// A gRPC status as an absl::Status with the same code and message.
absl::Status FromGrpc(const grpc::Status& status);
// The table above, for --help.
const char* ExitCodeHelp();

}  // namespace regdctl

#endif  // REGD_CLI_EXIT_CODES_H_
