// Streaming a local file to the daemon with UploadBlob, and the event
// helpers the write commands share.
//
// The UploadBlob protocol, as the caller's side (see registry.proto and
// client-examples/go/main.go `upload`): send `start`; wait for `send_from`;
// stream chunks from that offset; whenever another `send_from` comes, drop
// the current pass and stream from the new offset; after the last chunk keep
// the stream open (regd may ask again after a registry fault) until the
// `result`, then half-close. One thread sends (Write blocks while the
// stream's flow-control window is full: that is the back-pressure), the
// calling thread reads events.
#ifndef REGD_CLI_UPLOAD_H_
#define REGD_CLI_UPLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/calls.h"
#include "cli/connection.h"
#include "cli/progress.h"
#include "regd/v1/registry.pb.h"

namespace regdctl {

struct UploadRequest {
  std::string repo;
  std::string path;    // the local file
  std::string digest;  // required ("sha256:...")
  int64_t size = 0;    // required
  std::string media_type;
  std::string mount_from;
  int64_t chunk_bytes = 1 << 20;  // bytes per UploadChunk (at most 8 MiB)
  regd::v1::RetryConfig retry;
};

struct UploadOutcome {
  regd::v1::LayerResult result;
  int64_t bytes_sent = 0;          // chunk bytes handed to gRPC, resends included
  int passes = 0;                  // send_from offsets acted on
  std::vector<int64_t> send_from;  // every offset regd asked for, in order
  int retries = 0;
};

// Uploads `req.path` with one UploadBlob call, reporting to `display` under
// `id`. The call is registered with the signal handler and with `group` (may
// be null), so either can cancel it.
[[nodiscard]] absl::StatusOr<UploadOutcome> UploadFile(Connection& conn, const UploadRequest& req,
                                                       ProgressDisplay* display,
                                                       const std::string& id, CallGroup* group);

// "uploaded", "existed", "mounted", "shared", "downloaded" (lower case of LayerResult.Outcome).
std::string OutcomeName(regd::v1::LayerResult::Outcome outcome);
absl::Duration DurationOf(const google::protobuf::Duration& d);
// Reports a RetryEvent to the display.
void ReportRetry(ProgressDisplay* display, const std::string& id,
                 const regd::v1::RetryEvent& retry);

}  // namespace regdctl

#endif  // REGD_CLI_UPLOAD_H_
