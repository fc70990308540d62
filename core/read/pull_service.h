// PullService: an image (or an index, whole or one platform of it) from a
// registry into an OCI image layout on disk (see LayoutWriter for the on-disk
// guarantees).
//
// A pull resolves the reference (manifests verified by digest), lists every
// blob it needs, downloads them in parallel (`concurrency` threads), each with
// ReadBlobResumable from the bytes already in its partial file, writes the
// manifests, and only then names the result in index.json. Memory is O(1) in
// the image size: blobs stream to disk; manifests are capped at 4 MiB.
//
// Thread-safe; borrows the Registries and the ReadService.
#ifndef REGD_CORE_READ_PULL_SERVICE_H_
#define REGD_CORE_READ_PULL_SERVICE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/call.h"
#include "core/manifest/manifest.h"
#include "core/read/read_service.h"
#include "core/registry/registries.h"

namespace regd {

struct PullSpec {
  std::string ref;
  std::optional<Platform> platform;  // an index's child to pull
  bool all_platforms = false;        // an index whole
  std::string layout_path;           // absolute, beneath the allowed paths
  std::string ref_name;              // empty: the tag, else the digest
  int concurrency = 0;               // 0: 4
};

class PullService {
 public:
  PullService(const Registries* registries, ReadService* reads,
              std::vector<std::string> allowed_paths, int max_index_entries, int max_image_layers)
      : registries_(registries),
        reads_(reads),
        allowed_paths_(std::move(allowed_paths)),
        max_index_entries_(max_index_entries),
        max_image_layers_(max_image_layers) {}

  // Events: on_progress (per blob), on_retry, on_layer (kDownloaded or
  // kExisted). Returns what index.json now names.
  [[nodiscard]] absl::StatusOr<Descriptor> PullImage(const CallContext& ctx, const PullSpec& spec);

 private:
  const Registries* const registries_;
  ReadService* const reads_;
  const std::vector<std::string> allowed_paths_;
  const int max_index_entries_;
  const int max_image_layers_;
};

}  // namespace regd

#endif  // REGD_CORE_READ_PULL_SERVICE_H_
