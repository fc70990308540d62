// The distribution v2 API, typed: every /v2/ URL regd sends, every mapping of
// a registry's answer to a Status, and the one retry loop for idempotent
// requests (with the one reader of Retry-After).
//
// RegistryApi is bound to one call and one registry: the call's credentials
// (a CredentialChain), its cancellation and the registry's Endpoint. It is a
// small value, made per use; it borrows the RegistryClient and Clock, which
// outlive it. Use it from one thread at a time.
//
// Not here: the upload session state machine (core/upload/uploader.h), which
// speaks the upload endpoints through the same path helpers, and is the one
// place where resume decisions are made.
#ifndef REGD_CORE_REGISTRY_V2_H_
#define REGD_CORE_REGISTRY_V2_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/auth/credentials.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/reference/reference.h"
#include "core/registry/client.h"
#include "core/registry/paths.h"
#include "core/retry/retry.h"
#include "core/upload/types.h"

namespace regd {

// The answer's Retry-After as a wait from `now`, when it has a parseable one.
std::optional<absl::Duration> RetryAfterOf(const HttpResponse& resp, absl::Time now);

// What a HEAD or GET of a manifest says about it.
struct ManifestHead {
  std::string media_type;  // the bare Content-Type ("" when none)
  std::string digest;      // Docker-Content-Digest when valid, else ""
  int64_t size = -1;       // Content-Length, or -1
};

struct RawManifest {
  std::string body;
  std::string content_type;   // bare
  std::string header_digest;  // Docker-Content-Digest as sent (unchecked)
};

class RegistryApi {
 public:
  // Reads retry on their own a little (a flaky network should not fail an
  // Inspect): transport errors, 408/429/5xx, three attempts, Retry-After
  // honoured up to 10 s.
  static constexpr RetryPolicy kReadRetry{3, absl::Milliseconds(200), 2.0, 0.2, absl::Seconds(2)};

  RegistryApi(RegistryClient* client, CredentialChain who, Endpoint endpoint, CancelFlag cancelled,
              Clock* clock);

  // HEAD /v2/<repo>/manifests/<ref>. nullopt: absent (404).
  [[nodiscard]] absl::StatusOr<std::optional<ManifestHead>> HeadManifest(
      const Repository& repo, absl::string_view reference);
  // GET /v2/<repo>/manifests/<ref>, at most `max_bytes`. 404 is NOT_FOUND
  // ("image reference not found").
  [[nodiscard]] absl::StatusOr<RawManifest> GetManifest(const Repository& repo,
                                                        absl::string_view reference,
                                                        size_t max_bytes);
  // PUT /v2/<repo>/manifests/<ref>, retried with `retry`; `on_retry` hears of
  // each wait. DATA_LOSS when the registry names another digest than `digest`.
  [[nodiscard]] absl::Status PutManifest(const Repository& repo, absl::string_view reference,
                                         const std::string& media_type, const std::string& body,
                                         const std::string& digest, const RetryPolicy& retry,
                                         const std::function<void(const RetryNotice&)>& on_retry);
  // HEAD /v2/<repo>/blobs/<digest>: its Content-Length (-1 when none), or
  // nullopt when absent.
  [[nodiscard]] absl::StatusOr<std::optional<int64_t>> HeadBlob(const Repository& repo,
                                                                absl::string_view digest);
  // GET a blob of at most `max_bytes` whole (configs).
  [[nodiscard]] absl::StatusOr<std::string> GetSmallBlob(const Repository& repo,
                                                         absl::string_view digest,
                                                         size_t max_bytes);
  // GET a blob streamed to `on_body` from `offset`: `Range: bytes=offset-`,
  // or `bytes=offset-last` when `last` >= 0. The raw answer (2xx, 416 or an
  // error status) comes back for the caller to judge; not retried (a stream
  // that began cannot be re-read into the same sink).
  // `on_head` (optional) sees each 2xx answer's headers before its body.
  [[nodiscard]] absl::StatusOr<HttpResponse> GetBlobStream(
      const Repository& repo, absl::string_view digest, int64_t offset, int64_t last,
      std::function<bool(long, absl::string_view)> on_body,
      std::function<bool(const HttpResponse&)> on_head = nullptr, size_t receive_buffer = 0);

  const Endpoint& endpoint() const { return endpoint_; }
  Observer* observer() const { return client_->observer(); }
  Clock* clock() const { return clock_; }
  const CancelFlag& cancelled() const { return cancelled_; }

 private:
  // Sends an idempotent request, retrying under `policy`.
  [[nodiscard]] absl::StatusOr<HttpResponse> SendIdempotent(
      const std::vector<std::string>& scopes, HttpRequest req, const RetryPolicy& policy,
      absl::Duration retry_after_cap,
      const std::function<void(const RetryNotice&)>& on_retry = nullptr);

  RegistryClient* const client_;
  const CredentialChain who_;
  const Endpoint endpoint_;
  const CancelFlag cancelled_;
  Clock* const clock_;
};

}  // namespace regd

#endif  // REGD_CORE_REGISTRY_V2_H_
