// The one place where absl::Status becomes grpc::Status. Both use the same
// canonical code numbers; the message passes through unchanged (core never
// puts credentials in messages).
#ifndef REGD_SERVER_STATUS_UTIL_H_
#define REGD_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace regd {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace regd

#endif  // REGD_SERVER_STATUS_UTIL_H_
