// Value types of the write path: what to upload, how it went, and the event
// callbacks that report progress and retries while it runs.
//
// Callbacks are invoked on the engine thread doing the work; they must not
// block for long (the server's reactors coalesce progress and never block).
#ifndef REGD_CORE_UPLOAD_TYPES_H_
#define REGD_CORE_UPLOAD_TYPES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/manifest/manifest.h"

namespace regd {

// One blob to upload: a file (path) or inline bytes (data).
struct BlobSpec {
  std::optional<std::string> path;
  // Inline bytes, borrowed: they belong to the request, which outlives the
  // engine call (regd never copies a caller's inline data).
  std::optional<absl::string_view> data;
  std::string digest;      // optional: computed when empty, verified when given
  int64_t size = -1;       // optional: -1 computes it
  std::string media_type;  // optional
  std::string mount_from;  // optional: repository on the same registry
};

enum class LayerOutcomeKind { kUploaded, kExisted, kMounted, kShared, kDownloaded };

// "uploaded", "existed", "mounted", "shared", "downloaded".
inline absl::string_view OutcomeName(LayerOutcomeKind k) {
  switch (k) {
    case LayerOutcomeKind::kUploaded:
      return "uploaded";
    case LayerOutcomeKind::kExisted:
      return "existed";
    case LayerOutcomeKind::kMounted:
      return "mounted";
    case LayerOutcomeKind::kShared:
      return "shared";
    case LayerOutcomeKind::kDownloaded:
      return "downloaded";
  }
  return "uploaded";
}

struct LayerOutcome {
  Descriptor descriptor;
  LayerOutcomeKind outcome = LayerOutcomeKind::kUploaded;
};

// Sent before each wait between attempts.
struct RetryNotice {
  int attempt = 0;  // 1-based: the attempt that failed
  int max_attempts = 0;
  std::string error;
  absl::Duration next_retry_in;
};

struct UploadEvents {
  std::function<void(int64_t complete, int64_t total)> on_progress;
  std::function<void(const RetryNotice&)> on_retry;
};

struct PushEvents {
  std::function<void(const std::string& digest, int64_t complete, int64_t total)> on_progress;
  std::function<void(const std::string& digest, const RetryNotice&)> on_retry;
  std::function<void(const std::string& digest, const LayerOutcome&)> on_layer;
};

struct PushImageSpec {
  std::string ref;
  // Source: an OCI layout directory (when layout_path is set) ...
  std::string layout_path;
  std::string ref_name;
  // ... or an image built from blobs.
  BlobSpec config;
  std::vector<BlobSpec> layers;
  std::string media_type;  // manifest media type; empty: OCI
  std::map<std::string, std::string> annotations;
  int concurrency = 0;  // 0: 4
};

struct IndexEntrySpec {
  std::string ref;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;
};

struct PushIndexSpec {
  std::string ref;
  std::vector<IndexEntrySpec> manifests;
  std::string media_type;  // empty: OCI index
  std::map<std::string, std::string> annotations;
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_TYPES_H_
