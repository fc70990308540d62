// WriteService: the write RPCs (WriteLayer, UploadBlob, PushImage, PushIndex).
//
// It owns the machinery every writer shares: the table of in-flight uploads
// (concurrent writers of one blob, with the same credentials, share one
// upload), the per-registry upload slots, the digest cache of local files and
// the budget of inline bytes held at once. Each call prepares its blobs (a
// file beneath --allowed_paths, inline data, bytes a caller streams, or a
// digest the registry must already hold), uploads them through BlobUploader
// under the call's credentials and retry policy, then puts manifests last so
// that a tag never names an image whose parts are missing.
//
// Borrows the Registries and the ReadService (PushIndex reads the children it
// indexes), which outlive it. Thread-safe.
#ifndef REGD_CORE_WRITE_WRITE_SERVICE_H_
#define REGD_CORE_WRITE_WRITE_SERVICE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/byte_budget.h"
#include "core/call.h"
#include "core/read/read_service.h"
#include "core/registry/registries.h"
#include "core/upload/blob_source.h"
#include "core/upload/blob_stream.h"
#include "core/upload/digest_cache.h"
#include "core/upload/registry_slots.h"
#include "core/upload/shared_uploads.h"
#include "core/upload/types.h"

namespace regd {

struct WriteOptions {
  // Directories file sources may be read from (--allowed_paths). Empty: none.
  std::vector<std::string> allowed_paths;
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
};

class WriteService {
 public:
  WriteService(WriteOptions options, const Registries* registries, ReadService* reads);

  // The budget of bytes calls hold in memory (--inline_memory): inline data,
  // UploadBlob streams, and ReadBlob's fast path (see ReadService).
  ByteBudget* inline_budget() { return &inline_budget_; }

  [[nodiscard]] absl::StatusOr<LayerOutcome> WriteLayer(const CallContext& ctx,
                                                        absl::string_view repo, BlobSpec blob);
  [[nodiscard]] absl::StatusOr<LayerOutcome> UploadStream(const CallContext& ctx,
                                                          absl::string_view repo,
                                                          const BlobSpec& spec,
                                                          const BlobStream* stream);
  [[nodiscard]] absl::StatusOr<Descriptor> PushImage(const CallContext& ctx,
                                                     const PushImageSpec& spec);
  [[nodiscard]] absl::StatusOr<Descriptor> PushIndex(const CallContext& ctx,
                                                     const PushIndexSpec& spec);

 private:
  // A blob ready to upload: its bytes and its descriptor.
  struct PreparedBlob {
    // Open bytes, or null for a file that opens when its upload starts
    // (`reopen`), so a push holds one descriptor per upload in flight.
    std::unique_ptr<OpenedBlob> blob;
    std::function<absl::StatusOr<std::unique_ptr<OpenedBlob>>()> reopen;
    const BlobStream* streamed = nullptr;  // bytes a caller streams (UploadBlob)
    bool registry_only = false;            // named by digest: must be in the registry
    std::string identity;                  // the file's when planned; a reopen must match it
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
  // UploadPrepared without the outcome's report.
  [[nodiscard]] absl::StatusOr<LayerOutcome> UploadOnce(const CallContext& ctx,
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
  [[nodiscard]] absl::StatusOr<PushPlan> PlanFromLayout(const CallContext& ctx,
                                                        const PushImageSpec& spec);
  // The directories `ctx`'s file sources may be read from.
  const std::vector<std::string>& RootsFor(const CallContext& ctx) const;
  // PERMISSION_DENIED for a tenant whose policy grants no file sources.
  [[nodiscard]] absl::Status FileSourcesAllowed(const CallContext& ctx) const;
  [[nodiscard]] absl::StatusOr<PushPlan> PlanFromImage(const CallContext& ctx,
                                                       const PushImageSpec& spec);
  [[nodiscard]] absl::Status UploadAll(const CallContext& ctx, const Repository& repo,
                                       const PushPlan& plan, int concurrency);
  [[nodiscard]] absl::Status PutManifest(const CallContext& ctx, const Repository& repo,
                                         const std::string& reference, const ManifestToPush& m,
                                         const RetryPolicy& retry);
  // The policy check for `mount_from` (a path on `repo`'s registry): false
  // when the caller may not read it, so the blob is uploaded instead.
  bool MayMountFrom(const CallContext& ctx, const Repository& repo, const std::string& path) const;

  const WriteOptions options_;
  const Registries* const registries_;
  ReadService* const reads_;
  SharedUploads uploads_;
  RegistrySlots slots_;
  DigestCache digests_;
  ByteBudget inline_budget_;
};

}  // namespace regd

#endif  // REGD_CORE_WRITE_WRITE_SERVICE_H_
