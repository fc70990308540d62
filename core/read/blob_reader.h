// ReadBlobResumable: one blob from a registry, as one unbroken byte stream,
// resumed after faults.
//
// The first request asks for the bytes from `offset` (a plain GET at 0, else
// `Range: bytes=offset-`). When a transfer fails part-way (a reset, a stall, a
// 5xx/429/408 answer) the next request asks for the bytes from the first one
// the sink has not had, after the retry policy's wait; an attempt that moved
// bytes restores the whole attempt budget, so a long download on a flaky
// network finishes as long as each attempt gets somewhere. Registry quirks:
//   - a 416 to an open range (`bytes=a-`, go-containerregistry's registry takes
//     only `bytes=a-b`): HEAD for the size, then closed ranges from then on;
//   - a 200 to a Range (the registry ignores it): the bytes before the one
//     wanted are dropped here.
// Every answer is checked against the blob the first one described: its size
// (Content-Length of a 200, the total of a 206's Content-Range), the start of
// its range, and Docker-Content-Digest when sent. Another blob is DATA_LOSS at
// once; with a digester (fed every byte from `offset`, having hashed the bytes
// before it) a changed content is DATA_LOSS at the end.
//
// Memory: no buffer of its own; the sink sees libcurl's buffers.
#ifndef REGD_CORE_READ_BLOB_READER_H_
#define REGD_CORE_READ_BLOB_READER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/digest.h"
#include "core/reference/reference.h"
#include "core/registry/v2.h"
#include "core/retry/retry.h"
#include "core/upload/types.h"

namespace regd {

struct BlobRead {
  int64_t offset = 0;  // the first byte wanted
  int64_t size = -1;   // the blob's size when known (a descriptor's); checked
  // Fed every byte delivered; it must have hashed [0, offset) already. At the
  // end its digest must be the blob's (DATA_LOSS otherwise). Null: no check.
  Digester* verify = nullptr;
  RetryPolicy retry;
  // Hears of each wait before a resume.
  std::function<void(const RetryNotice&)> on_retry;
  // Gets the bytes in order; false stops the read (CANCELLED).
  std::function<bool(absl::string_view)> sink;
  size_t receive_buffer = 512 << 10;  // libcurl's buffer: one callback per this much
};

struct BlobReadResult {
  int64_t size = -1;      // the blob's size, when the registry said
  int64_t delivered = 0;  // bytes given to the sink
  int resumes = 0;        // requests after the first (faults and range fallbacks)
};

// A 206's Content-Range, "bytes a-b/total" (total may be "*": -1). nullopt
// for anything else, or a < 0, b < a, total <= b.
struct ContentRange {
  int64_t first = -1;
  int64_t last = -1;
  int64_t total = -1;
};
std::optional<ContentRange> ParseContentRange(absl::string_view value);

// The read policy when a call brings none: 5 attempts, 200 ms first wait,
// doubling, at most 3 s.
RetryPolicy DefaultBlobReadRetry();

[[nodiscard]] absl::StatusOr<BlobReadResult> ReadBlobResumable(RegistryApi& api,
                                                               const Repository& repo,
                                                               const std::string& digest,
                                                               const BlobRead& read);

}  // namespace regd

#endif  // REGD_CORE_READ_BLOB_READER_H_
