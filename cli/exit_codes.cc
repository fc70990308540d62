#include "cli/exit_codes.h"

#include "cli/args.h"

namespace regdctl {

std::string CodeName(absl::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  int n = static_cast<int>(code);
  if (n >= 0 && n < static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) return kNames[n];
  return "CODE_" + std::to_string(n);
}

int ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return 0;
  if (IsUsageError(status)) return kExitUsage;
  int n = static_cast<int>(status.code());
  if (n == static_cast<int>(absl::StatusCode::kCancelled)) return 1;
  if (n >= 3 && n <= 16) return n;
  return 17;  // UNKNOWN, and any code outside the table
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

const char* ExitCodeHelp() {
  return "Exit status:\n"
         "  0   OK\n"
         "  1   CANCELLED (130: interrupted by SIGINT/SIGTERM; the call is cancelled first)\n"
         "  2   usage error\n"
         "  3   INVALID_ARGUMENT      4  DEADLINE_EXCEEDED    5  NOT_FOUND\n"
         "  6   ALREADY_EXISTS        7  PERMISSION_DENIED    8  RESOURCE_EXHAUSTED\n"
         "  9   FAILED_PRECONDITION  10  ABORTED             11  OUT_OF_RANGE\n"
         "  12  UNIMPLEMENTED        13  INTERNAL            14  UNAVAILABLE\n"
         "  15  DATA_LOSS            16  UNAUTHENTICATED     17  UNKNOWN\n"
         "  (3..16 are the gRPC code numbers.) `exists` exits 5 when the image is absent.\n"
         "Errors are one line on stderr: \"regdctl: <CODE>: <message>\". Local failures\n"
         "(a file that cannot be read, a digest mismatch) get the code that fits.\n";
}

}  // namespace regdctl
