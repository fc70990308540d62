// BlobUploader: the upload state machine for one blob to one repository.
//
//   HEAD blob ──present──▶ EXISTED
//      │ absent
//   [mount_from] POST ?mount=&from= ──201──▶ MOUNTED   (202: use that session)
//      │
//   POST /blobs/uploads/  → session (Location, OCI-Chunk-Min/Max-Length)
//      │
//   small blob: PUT Location?digest= with the whole body
//   large blob: PATCH Location (Content-Range, Content-Length) per chunk,
//               always following the newest Location; then PUT ?digest=
//      │
//   UPLOADED
//
// Failures: transport errors and 408/429/5xx are retried with the call's
// RetryPolicy (a RetryEvent before each wait; Retry-After is a floor on the
// wait). The attempt count restarts whenever the registry acknowledges bytes
// beyond the most it ever held (so a registry that keeps dropping sessions
// cannot keep an upload going forever). Before sending data again after a failure, the uploader
// asks the registry where it is (GET Location → Range + new Location) and resumes from there; 416
// also means "ask". If the session is gone (404, as distribution 2.8 answers once a partly received
// body has been appended), it opens a fresh session and starts over, the only case that re-sends
// from byte 0. A failed final PUT first checks whether the blob landed (HEAD). This is the one
// place where these resume decisions are made.
//
// Cancellation (the flag) stops the transfer promptly; any open session is
// DELETEd on cancellation and on final failure.
//
// A 416 to a PATCH sent at the offset the registry then confirms means the
// chunk itself was refused (GHCR caps Content-Range chunks at 4 MiB): chunks
// halve, down to OCI-Chunk-Min-Length or 1 MiB.
//
// One BlobUploader per upload, used by one thread. It borrows the client and
// the blob, which must outlive Run().
#ifndef REGD_CORE_UPLOAD_UPLOADER_H_
#define REGD_CORE_UPLOAD_UPLOADER_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/reference/reference.h"
#include "core/registry/client.h"
#include "core/retry/retry.h"
#include "core/upload/blob_source.h"
#include "core/upload/types.h"

namespace regd {

struct UploadJob {
  Endpoint endpoint;
  Repository repo;
  std::string digest;
  int64_t size = 0;
  // Null: the blob must already be in the registry (or mountable); an upload
  // that would need bytes fails with FAILED_PRECONDITION instead.
  const BlobBytes* blob = nullptr;
  CredentialChain who;  // the calling caller's credentials
  Observer* observer = nullptr;  // hears of retries; null: none
  std::string mount_from;  // repository path on the same registry, or ""
  int64_t chunk_size = 16 << 20;
  int64_t monolithic_threshold = 16 << 20;
  // When > 0, the blob's last `held_tail` bytes go in the final PUT, after
  // blob->Prepare() (a streamed source checks its digest there): a source
  // that can fail never fails inside the request that commits.
  int64_t held_tail = 0;
  RetryPolicy retry;
  UploadEvents events;
  CancelFlag cancelled;
  // After a cancel, a request in flight may run this long to end cleanly
  // (then the session is deleted at its newest Location); past it, it is cut.
  absl::Duration cancel_grace = absl::Seconds(5);
  // Waits between attempts; returns early (false) when cancelled. Null: real sleep.
  std::function<bool(absl::Duration)> sleep;
  Clock* clock = nullptr;
};

class BlobUploader {
 public:
  BlobUploader(RegistryClient* client, UploadJob job);

  // Runs to completion: kUploaded, kExisted or kMounted, or the error.
  [[nodiscard]] absl::StatusOr<LayerOutcomeKind> Run();

  // Request body bytes this uploader sent (for tests and metrics).
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  enum class Step { kDone, kContinue };

  [[nodiscard]] absl::StatusOr<bool> BlobExists();
  [[nodiscard]] absl::StatusOr<bool> TryMount();
  [[nodiscard]] absl::Status OpenSession();
  [[nodiscard]] absl::Status SendMonolithic();
  [[nodiscard]] absl::Status SendChunk();
  [[nodiscard]] absl::Status Commit();
  [[nodiscard]] absl::Status Recover();
  // After a 400: OK when it is not about part sizes, else ABORTED with the
  // session dropped and parts raised to 5 MiB.
  [[nodiscard]] absl::Status RefusedSmallParts();
  [[nodiscard]] absl::StatusOr<LayerOutcomeKind> Fail(absl::Status st);
  void Abandon();
  // Where the held tail begins (the blob's size when none is held).
  int64_t TailStart() const;

  // With `scopes` null, the push scope of the target repository.
  [[nodiscard]] absl::StatusOr<HttpResponse> Send(HttpRequest req,
                                                  const std::vector<std::string>* scopes = nullptr);
  // Records Location/Range/Retry-After from a response.
  void TakeLocation(const HttpResponse& resp, const std::string& request_url);
  // Chunk size from the job and the session's OCI-Chunk-Min/Max-Length.
  void TakeChunkLimits(const HttpResponse& resp);
  void ReportProgress(int64_t complete, bool force);
  bool Cancelled() const { return job_.cancelled && job_.cancelled->load(); }
  bool Sleep(absl::Duration d);

  RegistryClient* const client_;
  UploadJob job_;
  std::vector<std::string> scopes_;        // push on the target repository
  std::vector<std::string> mount_scopes_;  // plus pull on mount_from, for the mount only

  std::string location_;    // newest upload URL; empty: no session
  int64_t offset_ = 0;      // bytes the registry holds
  int64_t high_water_ = 0;  // the most bytes it ever acknowledged
  int64_t chunk_ = 0;
  bool must_recover_ = false;
  // The last request that carried a body ended without an answer: the
  // session's Location may be stale.
  bool interrupted_ = false;
  bool small_part_sent_ = false;  // a part under 5 MiB went before the last
  bool part_floor_ = false;       // parts are at least 5 MiB from now on
  bool commit_failed_ = false;    // a PUT ?digest= failed: HEAD before resuming
  bool landed_ = false;           // ... and the HEAD found the blob
  bool refused_offset_ = false;   // the last failure was a 416
  bool source_failed_ = false;    // the source failed (a streaming caller): no retry
  bool chunk_refused_ = false;    // ... to a PATCH
  int64_t min_chunk_ = 1 << 20;   // the smallest chunk we shrink to
  std::optional<absl::Duration> retry_after_;
  int64_t bytes_sent_ = 0;
  absl::Time last_progress_ = absl::InfinitePast();
  int64_t last_reported_ = -1;
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_UPLOADER_H_
