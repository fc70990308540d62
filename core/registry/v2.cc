#include "core/registry/v2.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/auth/authenticator.h"
#include "core/digest.h"
#include "core/manifest/manifest.h"
#include "core/status_macros.h"

namespace regd {
namespace {

// A read waits out a Retry-After of at most this; it fails rather than park.
constexpr absl::Duration kReadRetryAfterCap = absl::Seconds(10);
// A write may wait longer: the registry asked for it, and the push is worth it.
constexpr absl::Duration kWriteRetryAfterCap = absl::Minutes(10);

int64_t ContentLength(const HttpResponse& resp) {
  int64_t n = -1;
  auto h = resp.Header("content-length");
  if (h.has_value() && absl::SimpleAtoi(*h, &n) && n >= 0) return n;
  return -1;
}

std::vector<std::string> PullOf(const Repository& repo) { return {PullScope(repo.path)}; }

}  // namespace

std::optional<absl::Duration> RetryAfterOf(const HttpResponse& resp, absl::Time now) {
  std::optional<std::string> value = resp.Header("retry-after");
  if (!value.has_value()) return std::nullopt;
  return ParseRetryAfter(*value, now);
}

RegistryApi::RegistryApi(RegistryClient* client, CredentialChain who, Endpoint endpoint,
                         CancelFlag cancelled, Clock* clock)
    : client_(client),
      who_(who),
      endpoint_(std::move(endpoint)),
      cancelled_(std::move(cancelled)),
      clock_(clock) {}

absl::StatusOr<HttpResponse> RegistryApi::SendIdempotent(
    const std::vector<std::string>& scopes, HttpRequest req, const RetryPolicy& policy_in,
    absl::Duration retry_after_cap, const std::function<void(const RetryNotice&)>& on_retry) {
  const RetryPolicy policy = policy_in.Sanitised();
  req.cancelled = cancelled_;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpResponse> resp = client_->Send(who_, endpoint_, scopes, req);
    if (cancelled_ && cancelled_->load()) return absl::CancelledError("cancelled");
    const bool retry =
        resp.ok() ? IsRetryableHttpStatus(resp->status) : absl::IsUnavailable(resp.status());
    if (!retry || attempt >= policy.max_attempts) return resp;
    std::optional<absl::Duration> after =
        resp.ok() ? RetryAfterOf(*resp, clock_->Now()) : std::nullopt;
    absl::Duration wait = NextRetryWait(policy, attempt, after, retry_after_cap);
    absl::Status why = resp.ok() ? StatusFromHttp(*resp, req.method) : resp.status();
    client_->observer()->Retry(RetryReason(why));
    if (on_retry) {
      on_retry(RetryNotice{attempt, policy.max_attempts, std::string(why.message()), wait});
    }
    if (!SleepUnlessCancelled(wait, cancelled_.get())) return absl::CancelledError("cancelled");
  }
}

absl::StatusOr<std::optional<ManifestHead>> RegistryApi::HeadManifest(const Repository& repo,
                                                                      absl::string_view reference) {
  HttpRequest req;
  req.method = "HEAD";
  req.url = ManifestPath(repo, reference);
  req.headers.emplace_back("Accept", std::string(media::kManifestAccept));
  ASSIGN_OR_RETURN(HttpResponse resp,
                   SendIdempotent(PullOf(repo), std::move(req), kReadRetry, kReadRetryAfterCap));
  if (resp.status == 404) return std::nullopt;
  if (resp.status != 200) return StatusFromHttp(resp, "HEAD manifest", NotFoundMeaning::kImage);
  ManifestHead h;
  h.media_type = BareMediaType(resp.Header("content-type").value_or(""));
  h.digest = resp.Header("docker-content-digest").value_or("");
  if (!ValidateDigest(h.digest).ok()) h.digest.clear();  // garbage is no answer
  h.size = ContentLength(resp);
  return h;
}

absl::StatusOr<RawManifest> RegistryApi::GetManifest(const Repository& repo,
                                                     absl::string_view reference,
                                                     size_t max_bytes) {
  HttpRequest req;
  req.method = "GET";
  req.url = ManifestPath(repo, reference);
  req.headers.emplace_back("Accept", std::string(media::kManifestAccept));
  req.max_body = max_bytes;
  absl::StatusOr<HttpResponse> resp =
      SendIdempotent(PullOf(repo), std::move(req), kReadRetry, kReadRetryAfterCap);
  if (absl::IsResourceExhausted(resp.status())) {
    return absl::ResourceExhaustedError(absl::StrCat("manifest larger than ", max_bytes, " bytes"));
  }
  if (!resp.ok()) return resp.status();
  if (resp->status != 200) return StatusFromHttp(*resp, "GET manifest", NotFoundMeaning::kImage);
  RawManifest m;
  m.body = std::move(resp->body);
  m.content_type = BareMediaType(resp->Header("content-type").value_or(""));
  m.header_digest = resp->Header("docker-content-digest").value_or("");
  return m;
}

absl::Status RegistryApi::PutManifest(const Repository& repo, absl::string_view reference,
                                      const std::string& media_type, const std::string& body,
                                      const std::string& digest, const RetryPolicy& retry,
                                      const std::function<void(const RetryNotice&)>& on_retry) {
  HttpRequest req;
  req.method = "PUT";
  req.url = ManifestPath(repo, reference);
  req.headers.emplace_back("Content-Type", media_type);
  req.body = body;
  ASSIGN_OR_RETURN(HttpResponse resp, SendIdempotent({PushScope(repo.path)}, std::move(req), retry,
                                                     kWriteRetryAfterCap, on_retry));
  if (resp.status != 200 && resp.status != 201 && resp.status != 202) {
    return StatusFromHttp(resp, "PUT manifest");
  }
  std::string served = resp.Header("docker-content-digest").value_or("");
  if (ValidateDigest(served).ok() && served != digest) {
    return absl::DataLossError(
        absl::StrCat("registry stored the manifest as ", served, ", expected ", digest));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int64_t>> RegistryApi::HeadBlob(const Repository& repo,
                                                             absl::string_view digest) {
  HttpRequest req;
  req.method = "HEAD";
  req.url = BlobPath(repo, digest);
  req.follow_redirects = true;
  ASSIGN_OR_RETURN(HttpResponse resp,
                   SendIdempotent(PullOf(repo), std::move(req), kReadRetry, kReadRetryAfterCap));
  if (resp.status == 404) return std::nullopt;
  if (resp.status != 200) return StatusFromHttp(resp, "HEAD blob", NotFoundMeaning::kImage);
  return ContentLength(resp);
}

absl::StatusOr<std::string> RegistryApi::GetSmallBlob(const Repository& repo,
                                                      absl::string_view digest, size_t max_bytes) {
  HttpRequest req;
  req.method = "GET";
  req.url = BlobPath(repo, digest);
  req.follow_redirects = true;
  req.max_body = max_bytes;
  ASSIGN_OR_RETURN(HttpResponse resp,
                   SendIdempotent(PullOf(repo), std::move(req), kReadRetry, kReadRetryAfterCap));
  if (resp.status != 200) return StatusFromHttp(resp, "GET blob", NotFoundMeaning::kImage);
  return std::move(resp.body);
}

absl::StatusOr<HttpResponse> RegistryApi::GetBlobStream(
    const Repository& repo, absl::string_view digest, int64_t offset, int64_t last,
    std::function<bool(long, absl::string_view)> on_body,
    std::function<bool(const HttpResponse&)> on_head, size_t receive_buffer) {
  HttpRequest req;
  req.method = "GET";
  req.url = BlobPath(repo, digest);
  req.follow_redirects = true;
  req.cancelled = cancelled_;
  if (offset > 0 || last >= 0) {
    req.headers.emplace_back("Range", last >= 0 ? absl::StrCat("bytes=", offset, "-", last)
                                                : absl::StrCat("bytes=", offset, "-"));
  }
  req.on_body = std::move(on_body);
  req.on_head = std::move(on_head);
  req.receive_buffer = receive_buffer;
  return client_->Send(who_, endpoint_, PullOf(repo), std::move(req));
}

}  // namespace regd
