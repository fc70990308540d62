// Engine: the one object every RPC goes through.
//
// It owns the shared machinery: the pooled HTTP transport (connections, DNS and
// TLS sessions reused across calls), the credential store and token cache (one
// token per registry+scope, shared by all callers), per-registry settings, the
// per-registry upload limits and the table of in-flight uploads that lets
// concurrent writers of one blob share a single upload.
//
// Every method blocks its calling thread (an engine worker thread, never a
// gRPC callback thread) and reports failures as absl::Status; nothing throws.
// Thread-safe: any number of calls may run at once. The Engine must outlive
// every call into it.
#ifndef REGD_CORE_ENGINE_H_
#define REGD_CORE_ENGINE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/authenticator.h"
#include "core/auth/credentials.h"
#include "core/byte_budget.h"
#include "core/call.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/http/egress.h"
#include "core/http/http.h"
#include "core/manifest/manifest.h"
#include "core/reference/reference.h"
#include "core/registry/client.h"
#include "core/retry/retry.h"
#include "core/upload/blob_source.h"
#include "core/upload/blob_stream.h"
#include "core/upload/digest_cache.h"
#include "core/upload/registry_slots.h"
#include "core/upload/shared_uploads.h"
#include "core/upload/types.h"

namespace regd {

struct EngineOptions {
  // Per-registry settings from --config.
  RegistryConfigMap registries;
  // Registries that may be spoken to over plain HTTP (--insecure_registries).
  std::vector<std::string> insecure_registries;
  // host[:port] patterns of the registries regd may use (--allowed_registries);
  // empty: any. See EgressPolicy.
  std::vector<std::string> allowed_registries;
  // Directories file sources may be read from (--allowed_paths). Empty: none.
  std::vector<std::string> allowed_paths;
  TransportOptions transport;
  // Docker config directory; empty: $DOCKER_CONFIG, else ~/.docker.
  std::string docker_config_dir;
  // Upload chunk size when the registry config names none.
  int64_t default_chunk_size = 16 << 20;
  // Concurrent blob uploads per registry, shared by all calls.
  int default_registry_concurrency = 8;
  // Largest inline BlobSource.data.
  int64_t max_inline_bytes = 4 << 20;
  // Inline data held by all calls at once; past it RESOURCE_EXHAUSTED.
  int64_t inline_budget_bytes = 64 << 20;
  // After a cancel, how long an upload's request in flight may run to end
  // cleanly before it is cut (see UploadJob::cancel_grace).
  absl::Duration upload_cancel_grace = absl::Seconds(5);
  // Entries of a PushIndex, and layers of a PushImage.
  int max_index_entries = 1024;
  int max_image_layers = 4096;
  // Injected for tests; null: real ones.
  std::shared_ptr<Transport> transport_override;
  Clock* clock = nullptr;
};

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

class Engine {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Every call takes its CallContext: cancellation (calls stop promptly,
  // CANCELLED, once it is set), retry policy, events, credentials and the
  // policy check, which runs before anything is sent to a registry.

  // ---- reads ----
  [[nodiscard]] absl::StatusOr<InspectResult> Inspect(const CallContext& ctx,
                                                      absl::string_view ref,
                                                      const std::optional<Platform>& platform);
  [[nodiscard]] absl::StatusOr<ImageResult> GetImage(const CallContext& ctx,
                                                     absl::string_view ref,
                                                     const std::optional<Platform>& platform);
  // One HEAD. Absent → false.
  [[nodiscard]] absl::StatusOr<bool> Exists(const CallContext& ctx, absl::string_view ref);
  // One HEAD (GET + hash only when the registry sends no digest).
  [[nodiscard]] absl::StatusOr<Descriptor> GetDescriptor(const CallContext& ctx,
                                                         absl::string_view ref);
  // Streams the blob from `offset` to `sink` in chunks of at most `chunk_bytes`.
  // The sink blocks for back-pressure and returns false to stop (→ CANCELLED).
  // At offset 0 the digest is verified at the end (DATA_LOSS on mismatch).
  [[nodiscard]] absl::Status ReadBlob(const CallContext& ctx, absl::string_view repo,
                                      absl::string_view digest, int64_t offset,
                                      const std::function<bool(absl::string_view)>& sink,
                                      size_t chunk_bytes = 256 << 10);

  // ---- writes ----
  // Uploads one blob (see WriteLayerRequest). Events go to ctx.events from the
  // calling thread; the LayerResult is returned, not sent as an event.
  [[nodiscard]] absl::StatusOr<LayerOutcome> WriteLayer(const CallContext& ctx,
                                                        absl::string_view repo, BlobSpec blob);
  // Uploads one blob whose bytes the caller streams into `stream` (UploadBlob);
  // `spec` names its digest, size, media type and mount source (no path, no
  // data). The stream must outlive the call.
  [[nodiscard]] absl::StatusOr<LayerOutcome> UploadStream(const CallContext& ctx,
                                                          absl::string_view repo,
                                                          const BlobSpec& spec,
                                                          const BlobStream* stream);
  // Pushes an image (blobs concurrently, manifest last). Events carry the blob digest.
  [[nodiscard]] absl::StatusOr<Descriptor> PushImage(const CallContext& ctx,
                                                     const PushImageSpec& spec);
  // Builds and pushes an index from already-pushed manifests.
  [[nodiscard]] absl::StatusOr<Descriptor> PushIndex(const CallContext& ctx,
                                                     const PushIndexSpec& spec);

  // For tests and metrics.
  const TokenCache& tokens() const { return auth_->tokens(); }
  Transport* transport() const { return transport_.get(); }

 private:
  struct Fetched {
    std::string raw;
    std::string media_type;
    std::string digest;
    ManifestKind kind;
  };

  // A blob ready to upload: its bytes and its descriptor.
  struct PreparedBlob {
    // Open bytes, or null for a file that opens when its upload starts
    // (`reopen`), so a push holds one descriptor per upload in flight.
    std::unique_ptr<OpenedBlob> blob;
    std::function<absl::StatusOr<std::unique_ptr<OpenedBlob>>()> reopen;
    const BlobStream* streamed = nullptr;  // bytes a caller streams (UploadBlob)
    bool registry_only = false;            // named by digest: must be in the registry
    std::string identity;  // the file's when planned; a reopen must match it
    Descriptor descriptor;
    std::string mount_from;                // as the caller named it, or "" (resolved per target)
    ByteBudget::Reservation inline_bytes;  // for inline data
    bool digest_computed = false;          // by us, from the bytes (not the caller's word)

    const BlobBytes* bytes() const {
      return blob != nullptr ? static_cast<const BlobBytes*>(blob.get()) : streamed;
    }
  };
  // A manifest to PUT: raw bytes as they will be served.
  struct ManifestToPush {
    std::string raw;
    Descriptor descriptor;
  };
  struct PushPlan {
    std::vector<PreparedBlob> blobs;       // unique by digest
    std::vector<ManifestToPush> children;  // pushed by digest, before `top`
    ManifestToPush top;
  };

  explicit Engine(EngineOptions options);

  // Inline data is moved out of `spec` (the call's copy of the request's).
  [[nodiscard]] absl::StatusOr<PreparedBlob> PrepareBlob(const CallContext& ctx, BlobSpec spec,
                                                         absl::string_view default_media_type);
  // INVALID_ARGUMENT unless the blob's bytes hash to its descriptor's digest.
  [[nodiscard]] absl::Status VerifySourceDigest(const PreparedBlob& blob,
                                                const CancelFlag& cancelled);
  // The digest of `blob`'s bytes with `algorithm`, through the DigestCache
  // for files; stops at cancel.
  [[nodiscard]] absl::StatusOr<std::string> DigestOf(const OpenedBlob& blob,
                                                     const std::string& algorithm,
                                                     const CancelFlag& cancelled);
  // Uploads a prepared blob (sharing a concurrent upload of the same blob
  // with the same credentials). `cancelled` may be narrower than ctx's (a
  // push stops its other uploads on the first failure).
  [[nodiscard]] absl::StatusOr<LayerOutcome> UploadPrepared(const CallContext& ctx,
                                                            const Repository& repo,
                                                            const PreparedBlob& blob,
                                                            const UploadEvents& events,
                                                            const CancelFlag& cancelled);
  // UploadPrepared for a planned blob, opening its file first when needed.
  [[nodiscard]] absl::StatusOr<LayerOutcome> OpenAndUpload(const CallContext& ctx,
                                                           const Repository& repo,
                                                           const PreparedBlob& planned,
                                                           const UploadEvents& events,
                                                           const CancelFlag& cancelled);
  [[nodiscard]] absl::StatusOr<LayerOutcomeKind> RunUploader(
      const CallContext& ctx, const Repository& repo, const PreparedBlob& blob,
      const std::string& mount_from, const UploadEvents& events, const CancelFlag& cancelled);
  [[nodiscard]] absl::StatusOr<PushPlan> PlanFromLayout(const PushImageSpec& spec);
  [[nodiscard]] absl::StatusOr<PushPlan> PlanFromImage(const CallContext& ctx,
                                                       const PushImageSpec& spec);
  [[nodiscard]] absl::Status UploadAll(const CallContext& ctx, const Repository& repo,
                                       const PushPlan& plan, int concurrency);
  [[nodiscard]] absl::Status PutManifest(const CallContext& ctx, const Repository& repo,
                                         const std::string& reference, const ManifestToPush& m,
                                         const RetryPolicy& retry);
  // The credentials `ctx` resolves through: its own, its tenant's, the daemon's.
  CredentialChain ChainFor(const CallContext& ctx) const;
  // The policy check for `mount_from` (a path on `repo`'s registry): false
  // when the caller may not read it, so the blob is uploaded instead.
  bool MayMountFrom(const CallContext& ctx, const Repository& repo, const std::string& path) const;

  Endpoint EndpointFor(const std::string& registry) const;
  const RegistryConfig* ConfigFor(const std::string& registry) const;
  // The Retry-After of an answer, if it has a parseable one.
  std::optional<absl::Duration> RetryAfterOf(const absl::StatusOr<HttpResponse>& resp);
  // Sends with a short retry for idempotent reads (transport errors, 5xx, 429).
  [[nodiscard]] absl::StatusOr<HttpResponse> SendRead(const CallContext& ctx,
                                                      const Repository& repo, HttpRequest req);
  [[nodiscard]] absl::StatusOr<HttpResponse> HeadManifest(const CallContext& ctx,
                                                          const Reference& ref);
  [[nodiscard]] absl::StatusOr<Fetched> FetchManifest(const CallContext& ctx,
                                                      const Repository& repo,
                                                      const std::string& identifier);
  [[nodiscard]] absl::StatusOr<std::string> FetchSmallBlob(const CallContext& ctx,
                                                           const Repository& repo,
                                                           const Descriptor& d);
  [[nodiscard]] absl::StatusOr<Manifest> ResolveImage(const CallContext& ctx, const Reference& ref,
                                                      const std::optional<Platform>& platform,
                                                      Fetched* fetched);
  [[nodiscard]] absl::StatusOr<std::map<std::string, std::string>> LabelsOf(
      const CallContext& ctx, const Repository& repo, const Manifest& m);

  EngineOptions options_;
  Clock* clock_;
  std::shared_ptr<const EgressPolicy> egress_;
  std::shared_ptr<Transport> transport_;
  std::unique_ptr<CredentialStore> credentials_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<RegistryClient> client_;
  std::unique_ptr<SharedUploads> uploads_;
  std::unique_ptr<RegistrySlots> slots_;
  DigestCache digests_;
  ByteBudget inline_budget_;
};

}  // namespace regd

#endif  // REGD_CORE_ENGINE_H_
