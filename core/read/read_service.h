// ReadService: the read RPCs (Inspect, GetImage, Exists, GetDescriptor,
// ReadBlob), and the verified manifest fetch the write side also uses.
//
// Every call runs on its caller's thread with its CallContext: the policy
// check first (PERMISSION_DENIED before anything is sent), then the registry
// through a RegistryApi bound to the call's credentials. Manifests and configs
// are verified against their digests; blobs read from offset 0 too.
//
// Manifests fetched by digest and config blobs are kept in a MetadataCache
// (when one is given), keyed by registry, repository, the call's credential
// identity and digest, and served from it without a registry round trip;
// manifests fetched by tag always ask the registry.
//
// Stateless beyond what it borrows (the Registries and the cache, which
// outlive it); thread-safe.
#ifndef REGD_CORE_READ_READ_SERVICE_H_
#define REGD_CORE_READ_READ_SERVICE_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/byte_budget.h"
#include "core/call.h"
#include "core/manifest/manifest.h"
#include "core/read/metadata_cache.h"
#include "core/reference/reference.h"
#include "core/registry/registries.h"

namespace regd {

// What Inspect reports (see ManifestResult in the proto).
struct InspectResult {
  int64_t schema_version = 0;
  std::string media_type;
  std::string digest;
  std::vector<Descriptor> manifests;  // index entries (with platform when present)
  std::vector<std::string> layers;
  std::string config;
  std::map<std::string, std::string> labels;
};

struct ImageResult {
  Descriptor descriptor;  // the manifest's
  std::string raw_manifest;
  std::string raw_config;
  Descriptor config;
  std::vector<Descriptor> layers;
};

// A manifest as fetched: its bytes (verified against the digest asked for,
// else the one the registry names), media type and kind.
struct FetchedManifest {
  std::string raw;
  std::string media_type;
  std::string digest;
  ManifestKind kind = ManifestKind::kManifest;
};

class ReadService {
 public:
  // `cache` may be null: nothing is cached.
  explicit ReadService(const Registries* registries, MetadataCache* cache = nullptr)
      : registries_(registries), cache_(cache) {}
  // Where ReadBlob's fast path reserves its buffers (--inline_memory); set
  // once, before any call. Null: every ReadBlob takes the lean path.
  void set_buffer_budget(ByteBudget* budget) { budget_ = budget; }

  [[nodiscard]] absl::StatusOr<InspectResult> Inspect(const CallContext& ctx, absl::string_view ref,
                                                      const std::optional<Platform>& platform);
  [[nodiscard]] absl::StatusOr<ImageResult> GetImage(const CallContext& ctx, absl::string_view ref,
                                                     const std::optional<Platform>& platform);
  [[nodiscard]] absl::StatusOr<bool> Exists(const CallContext& ctx, absl::string_view ref);
  [[nodiscard]] absl::StatusOr<Descriptor> GetDescriptor(const CallContext& ctx,
                                                         absl::string_view ref);
  // ReadBlob's two paths. Fast: 512 KiB messages, and from offset 0 the
  // hashing and sending on a second thread while this one receives; it holds
  // up to kFastReadMemory (the chunk filling, two waiting to be hashed, one
  // being hashed, two queued for the client, one being written), reserved
  // from the inline budget. Lean, when the budget is spent: 64 KiB messages,
  // hashed inline, about 0.4 MiB. Both below glibc's mmap threshold (1 MiB,
  // server/main.cc), so no message is a fresh mmap, zero-filled page by page.
  static constexpr size_t kFastReadChunk = 512 << 10;
  static constexpr size_t kLeanReadChunk = 64 << 10;
  static constexpr int64_t kFastReadMemory = 4 << 20;
  // `drained` (optional) waits until the caller has taken every chunk given
  // to `sink`; false: it stopped reading (CANCELLED). ReadBlob returns, and
  // lets go of its memory budget, only after that.
  [[nodiscard]] absl::Status ReadBlob(const CallContext& ctx, absl::string_view repo,
                                      absl::string_view digest, int64_t offset,
                                      const std::function<bool(std::string&&)>& sink,
                                      const std::function<bool()>& drained = nullptr);

  // GET a manifest by tag or digest, verified (no policy check: callers check).
  // By digest, served from the cache when this call's credentials fetched it before.
  [[nodiscard]] absl::StatusOr<FetchedManifest> FetchManifest(const CallContext& ctx,
                                                              const Repository& repo,
                                                              const std::string& identifier);
  // GET a small blob (a config), verified against its digest (or from the cache).
  [[nodiscard]] absl::StatusOr<std::string> FetchSmallBlob(const CallContext& ctx,
                                                           const Repository& repo,
                                                           const Descriptor& d);

 private:
  [[nodiscard]] absl::StatusOr<Manifest> ResolveImage(const CallContext& ctx, const Reference& ref,
                                                      const std::optional<Platform>& platform,
                                                      FetchedManifest* fetched);
  [[nodiscard]] absl::StatusOr<std::map<std::string, std::string>> LabelsOf(const CallContext& ctx,
                                                                            const Repository& repo,
                                                                            const Manifest& m);

  // The cache key of `digest` in `repo` for the call's credentials; "" when
  // nothing is to be cached (no cache, not a digest, credentials unresolved).
  [[nodiscard]] std::string CacheKey(const CallContext& ctx, const Repository& repo,
                                     MetadataCache::Kind kind, const std::string& digest) const;

  ByteBudget* budget_ = nullptr;
  const Registries* const registries_;
  MetadataCache* const cache_;
};

}  // namespace regd

#endif  // REGD_CORE_READ_READ_SERVICE_H_
