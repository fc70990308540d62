// Engine: the one object every RPC goes through, a thin facade.
//
// It builds and owns the shared machinery: the egress policy, the pooled HTTP
// transport (connections, DNS and TLS sessions reused across calls), the
// daemon's credential store, the Authenticator and its token cache (one token
// per registry, credentials and scope), the RegistryClient, the Registries
// (per-registry settings), the MetadataCache (manifests and configs by
// digest), and the two services that do the work: ReadService
// (core/read/) and WriteService (core/write/: in-flight uploads that
// concurrent writers of one blob share, per-registry upload slots).
//
// Every method blocks its calling thread (an engine worker thread, never a
// gRPC callback thread) and reports failures as absl::Status; nothing throws.
// Thread-safe: any number of calls may run at once. The Engine must outlive
// every call into it.
#ifndef REGD_CORE_ENGINE_H_
#define REGD_CORE_ENGINE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/authenticator.h"
#include "core/auth/credentials.h"
#include "core/call.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/http/egress.h"
#include "core/http/http.h"
#include "core/observer.h"
#include "core/read/metadata_cache.h"
#include "core/read/pull_service.h"
#include "core/read/read_service.h"
#include "core/registry/client.h"
#include "core/registry/registries.h"
#include "core/write/write_service.h"

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
  // Bytes of manifests and configs fetched by digest kept in memory
  // (--cache_bytes; see MetadataCache). 0: no cache.
  int64_t cache_bytes = 64 << 20;
  // Hears what the core does (metrics); null: nobody. Must outlive the Engine.
  Observer* observer = nullptr;
  // Injected for tests; null: real ones.
  std::shared_ptr<Transport> transport_override;
  Clock* clock = nullptr;
};

// Engine: a thin facade over the services (like TF Serving's ServerCore).
class Engine {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Every call takes its CallContext: cancellation (calls stop promptly,
  // CANCELLED, once it is set), retry policy, events, credentials and the
  // policy check, which runs before anything is sent to a registry.

  // ---- reads (ReadService) ----
  [[nodiscard]] absl::StatusOr<InspectResult> Inspect(const CallContext& ctx, absl::string_view ref,
                                                      const std::optional<Platform>& platform) {
    return reads_->Inspect(ctx, ref, platform);
  }
  [[nodiscard]] absl::StatusOr<ImageResult> GetImage(const CallContext& ctx, absl::string_view ref,
                                                     const std::optional<Platform>& platform) {
    return reads_->GetImage(ctx, ref, platform);
  }
  // One HEAD. Absent → false.
  [[nodiscard]] absl::StatusOr<bool> Exists(const CallContext& ctx, absl::string_view ref) {
    return reads_->Exists(ctx, ref);
  }
  // One HEAD (GET + hash only when the registry sends no digest).
  [[nodiscard]] absl::StatusOr<Descriptor> GetDescriptor(const CallContext& ctx,
                                                         absl::string_view ref) {
    return reads_->GetDescriptor(ctx, ref);
  }
  // Streams the blob from `offset` to `sink` in chunks (ReadService::kFastReadChunk,
  // or kLeanReadChunk when --inline_memory is spent)
  // (the last one shorter), each handed over (the sink may keep the string).
  // The sink blocks for back-pressure and returns false to stop (→ CANCELLED).
  // Resumes after faults (ReadBlobResumable) under ctx.retry, telling
  // ctx.events.on_retry. At offset 0 the digest is verified at the end
  // (DATA_LOSS on mismatch; the last chunk is held back until then).
  [[nodiscard]] absl::Status ReadBlob(const CallContext& ctx, absl::string_view repo,
                                      absl::string_view digest, int64_t offset,
                                      const std::function<bool(std::string&&)>& sink,
                                      const std::function<bool()>& drained = nullptr) {
    return reads_->ReadBlob(ctx, repo, digest, offset, sink, drained);
  }

  // Pulls an image or index into an OCI layout (see PullService). Events
  // carry the blob digest; returns what index.json now names.
  [[nodiscard]] absl::StatusOr<Descriptor> PullImage(const CallContext& ctx, const PullSpec& spec) {
    return pulls_->PullImage(ctx, spec);
  }

  // ---- writes (WriteService) ----
  // Uploads one blob (see WriteLayerRequest). Events go to ctx.events from the
  // calling thread; the LayerResult is returned, not sent as an event.
  [[nodiscard]] absl::StatusOr<LayerOutcome> WriteLayer(const CallContext& ctx,
                                                        absl::string_view repo, BlobSpec blob) {
    return writes_->WriteLayer(ctx, repo, std::move(blob));
  }
  // Uploads one blob whose bytes the caller streams into `stream` (UploadBlob);
  // `spec` names its digest, size, media type and mount source (no path, no
  // data). The stream must outlive the call.
  [[nodiscard]] absl::StatusOr<LayerOutcome> UploadStream(const CallContext& ctx,
                                                          absl::string_view repo,
                                                          const BlobSpec& spec,
                                                          const BlobStream* stream) {
    return writes_->UploadStream(ctx, repo, spec, stream);
  }
  // Pushes an image (blobs concurrently, manifest last). Events carry the blob digest.
  [[nodiscard]] absl::StatusOr<Descriptor> PushImage(const CallContext& ctx,
                                                     const PushImageSpec& spec) {
    return writes_->PushImage(ctx, spec);
  }
  // Builds and pushes an index from already-pushed manifests.
  [[nodiscard]] absl::StatusOr<Descriptor> PushIndex(const CallContext& ctx,
                                                     const PushIndexSpec& spec) {
    return writes_->PushIndex(ctx, spec);
  }

  // For tests and metrics.
  const TokenCache& tokens() const { return auth_->tokens(); }
  Transport* transport() const { return transport_.get(); }

 private:
  Engine() = default;

  // Declared in the order they are built (and destroyed in reverse).
  std::shared_ptr<const EgressPolicy> egress_;
  std::shared_ptr<Transport> transport_;
  std::unique_ptr<CredentialStore> credentials_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<RegistryClient> client_;
  std::unique_ptr<Registries> registries_;
  std::unique_ptr<MetadataCache> cache_;
  std::unique_ptr<ReadService> reads_;
  std::unique_ptr<WriteService> writes_;
  std::unique_ptr<PullService> pulls_;
};

}  // namespace regd

#endif  // REGD_CORE_ENGINE_H_
