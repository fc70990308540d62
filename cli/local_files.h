// Local files regdctl reads: small ones whole (PEM, docker config), blobs by
// hashing them in one streaming pass. Errors are statuses with the code the
// errno implies and a message naming the file. Thread-safe (no shared state).
#ifndef REGD_CLI_LOCAL_FILES_H_
#define REGD_CLI_LOCAL_FILES_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regdctl {

// The whole file, refused (RESOURCE_EXHAUSTED) past `max_bytes`.
[[nodiscard]] absl::StatusOr<std::string> ReadSmallFile(const std::string& path, int64_t max_bytes);

// `path` made absolute against the working directory (symlinks are left for
// the daemon to judge): the daemon resolves paths in its own directory.
[[nodiscard]] absl::StatusOr<std::string> AbsolutePath(const std::string& path);

// A regular file's size (INVALID_ARGUMENT for a directory, FIFO, ...).
[[nodiscard]] absl::StatusOr<int64_t> RegularFileSize(const std::string& path);

// The sha256 digest ("sha256:<hex>") of a file and its size, read in 1 MiB
// pieces. `on_progress(done, total)` is called after each piece (may be
// null); when it returns false the hashing stops (CANCELLED).
struct FileDigest {
  std::string digest;
  int64_t size = 0;
};
[[nodiscard]] absl::StatusOr<FileDigest> HashFile(
    const std::string& path, const std::function<bool(int64_t, int64_t)>& on_progress);

// An errno as a status: "<what>: <strerror>".
absl::Status ErrnoStatus(int err, absl::string_view what);

}  // namespace regdctl

#endif  // REGD_CLI_LOCAL_FILES_H_
