#include "core/upload/uploader.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/auth/authenticator.h"
#include "core/log.h"
#include "core/registry/v2.h"
#include "core/status_macros.h"

namespace regd {
namespace {

constexpr char kOctetStream[] = "application/octet-stream";
constexpr absl::Duration kCommitStallTimeout = absl::Minutes(10);
// The smallest part S3-backed registries (ECR) take before the last one.
constexpr int64_t kMinStoragePart = 5 << 20;

std::optional<int64_t> HeldFromRange(const std::optional<std::string>& range) {
  if (!range.has_value()) return std::nullopt;
  return BytesHeldFromRange(*range);
}

std::optional<int64_t> HeaderInt(const HttpResponse& resp, absl::string_view name) {
  int64_t v = 0;
  auto h = resp.Header(name);
  if (h.has_value() && absl::SimpleAtoi(*h, &v) && v > 0) return v;
  return std::nullopt;
}

// Statuses after which another attempt may succeed. ABORTED is our "session
// lost" and OUT_OF_RANGE our 416; both resume rather than fail.
bool Retryable(const absl::Status& st) {
  return IsRetryableStatus(st) || absl::IsAborted(st) || absl::IsOutOfRange(st);
}

}  // namespace

BlobUploader::BlobUploader(RegistryClient* client, UploadJob job)
    : client_(client), job_(std::move(job)) {
  scopes_.push_back(PushScope(job_.repo.path));
  mount_scopes_ = scopes_;
  if (!job_.mount_from.empty() && job_.mount_from != job_.repo.path) {
    mount_scopes_.push_back(PullScope(job_.mount_from));
  }
  if (job_.clock == nullptr) job_.clock = SystemClock();
  chunk_ = std::max<int64_t>(job_.chunk_size, 64 << 10);
}

absl::StatusOr<HttpResponse> BlobUploader::Send(HttpRequest req,
                                                const std::vector<std::string>* scopes) {
  req.cancelled = job_.cancelled;
  // A request that creates or moves a session gets to end after a cancel, so
  // that regd learns the Location to delete (a cut POST would leave behind a
  // session regd never heard of; a cut PATCH one that 2.8 refuses to delete).
  const bool changes_session = req.method == "PATCH" || req.method == "PUT";
  if (changes_session || req.method == "POST") req.cancel_grace = job_.cancel_grace;
  retry_after_.reset();
  BodySource* const body = req.body_source;
  const std::string url = req.url;
  absl::StatusOr<HttpResponse> resp =
      client_->Send(job_.who, job_.endpoint, scopes != nullptr ? *scopes : scopes_, std::move(req));
  if (changes_session) interrupted_ = !resp.ok();
  if (resp.ok() && body != nullptr && !body->failure().ok()) {
    // The source failed mid-body and padded it: the request ended cleanly
    // (the session is where the answer says, and can be deleted), but it
    // does not count, and nothing is retried: the bytes cannot come.
    source_failed_ = true;
    if (resp->status >= 200 && resp->status < 300) TakeLocation(*resp, url);
    return body->failure();
  }
  if (resp.ok()) {
    retry_after_ = RetryAfterOf(*resp, job_.clock->Now());
  } else if (Cancelled()) {
    return absl::CancelledError("upload cancelled");
  }
  return resp;
}


void BlobUploader::TakeLocation(const HttpResponse& resp, const std::string& request_url) {
  auto loc = resp.Header("location");
  if (!loc.has_value() || loc->empty()) return;
  std::string base = absl::StartsWith(request_url, "/")
                         ? absl::StrCat(job_.endpoint.base_url, request_url)
                         : request_url;
  location_ = ResolveUrl(base, *loc);
}

void BlobUploader::TakeChunkLimits(const HttpResponse& resp) {
  chunk_ = std::max<int64_t>(job_.chunk_size, 64 << 10);
  min_chunk_ = 1 << 20;
  if (auto min = HeaderInt(resp, "oci-chunk-min-length")) {
    chunk_ = std::max(chunk_, *min);
    min_chunk_ = *min;
  }
  if (part_floor_) {
    // The registry refused a part under 5 MiB (ECR, S3-backed stores).
    chunk_ = std::max(chunk_, kMinStoragePart);
    min_chunk_ = std::max(min_chunk_, kMinStoragePart);
  }
  if (auto max = HeaderInt(resp, "oci-chunk-max-length")) chunk_ = std::min(chunk_, *max);
  min_chunk_ = std::min(min_chunk_, chunk_);
}

void BlobUploader::ReportProgress(int64_t complete, bool force) {
  if (!job_.events.on_progress) return;
  absl::Time now = job_.clock->Now();
  if (!force && now - last_progress_ < absl::Milliseconds(50)) return;
  if (complete == last_reported_) return;
  last_progress_ = now;
  last_reported_ = complete;
  job_.events.on_progress(complete, job_.size);
}

bool BlobUploader::Sleep(absl::Duration d) {
  if (job_.sleep) return job_.sleep(d);
  return SleepUnlessCancelled(d, job_.cancelled.get());
}

absl::StatusOr<bool> BlobUploader::BlobExists() {
  HttpRequest req;
  req.method = "HEAD";
  req.url = BlobPath(job_.repo, job_.digest);
  req.follow_redirects = true;
  ASSIGN_OR_RETURN(HttpResponse resp, Send(std::move(req)));
  if (resp.status == 404) return false;
  if (resp.status != 200) return StatusFromHttp(resp, "HEAD blob");
  // The registry holds these bytes under this digest: a source that says
  // otherwise about their size is wrong (and must not go into a manifest).
  std::optional<int64_t> length = HeaderInt(resp, "content-length");
  if (length.has_value() && *length != job_.size && job_.size > 0) {
    return absl::InvalidArgumentError(absl::StrCat("the registry holds ", job_.digest, " with ",
                                                   *length, " bytes; the source has ", job_.size));
  }
  return true;
}

absl::StatusOr<bool> BlobUploader::TryMount() {
  HttpRequest req;
  req.method = "POST";
  req.url = MountPath(job_.repo, job_.digest, job_.mount_from);
  absl::StatusOr<HttpResponse> sent = Send(req, &mount_scopes_);
  // A token service that refuses the source repository's scope only rules
  // out the mount, not the upload.
  if (absl::IsUnauthenticated(sent.status()) || absl::IsPermissionDenied(sent.status())) {
    return false;
  }
  ASSIGN_OR_RETURN(HttpResponse resp, std::move(sent));
  if (resp.status == 201) return true;
  if (resp.status == 202) {  // the registry fell back to a plain session: use it
    TakeLocation(resp, req.url);
    if (location_.empty()) return absl::UnavailableError("mount fallback: 202 without Location");
    TakeChunkLimits(resp);
    offset_ = 0;
    return false;
  }
  // Some registries answer a bad or unauthorised `from` with 401/403/404
  // (Harbor, Docker Hub): a mount is an optimisation, so upload instead.
  if (resp.status == 401 || resp.status == 403 || resp.status == 404) return false;
  return StatusFromHttp(resp, "POST mount");
}

absl::Status BlobUploader::OpenSession() {
  HttpRequest req;
  req.method = "POST";
  req.url = UploadsPath(job_.repo);
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status != 202) return StatusFromHttp(resp, "POST blob upload");
  TakeLocation(resp, req.url);
  if (location_.empty()) return absl::UnavailableError("POST blob upload: 202 without Location");
  TakeChunkLimits(resp);
  offset_ = 0;
  return absl::OkStatus();
}

int64_t BlobUploader::TailStart() const {
  if (job_.held_tail <= 0) return job_.size;
  int64_t start = std::max<int64_t>(0, job_.size - job_.held_tail);
  if (part_floor_ && chunk_ > 0) {
    // No part under 5 MiB may come before the last (ECR): a short one folds
    // into the tail.
    const int64_t rest = start % chunk_;
    if (rest > 0 && rest < kMinStoragePart) start -= rest;
  }
  return start;
}

absl::Status BlobUploader::SendMonolithic() {
  if (absl::Status ready = job_.blob->Prepare(0); !ready.ok()) {
    source_failed_ = true;
    return ready;
  }
  std::unique_ptr<BodySource> body = job_.blob->Range(0, job_.size);
  HttpRequest req;
  req.method = "PUT";
  req.url = CommitUrl(location_, job_.digest);
  req.headers.emplace_back("Content-Type", kOctetStream);
  req.body_source = body.get();
  req.on_upload_progress = [this](int64_t sent) { ReportProgress(sent, false); };
  req.stall_timeout = kCommitStallTimeout;  // it finalises too, once the body is in
  absl::StatusOr<HttpResponse> resp = Send(req);
  if (resp.ok()) bytes_sent_ += resp->bytes_sent;
  if (!resp.ok()) return resp.status();
  if (resp->status == 201 || resp->status == 204) {
    offset_ = job_.size;
    return absl::OkStatus();
  }
  if (resp->status == 404) return absl::AbortedError("upload session lost (PUT answered 404)");
  return StatusFromHttp(*resp, "PUT blob");
}

absl::Status BlobUploader::SendChunk() {
  int64_t len = std::min(chunk_, TailStart() - offset_);
  int64_t start = offset_;
  std::unique_ptr<BodySource> body = job_.blob->Range(start, len);
  HttpRequest req;
  req.method = "PATCH";
  req.url = location_;
  req.headers.emplace_back("Content-Type", kOctetStream);
  req.headers.emplace_back("Content-Range", absl::StrCat(start, "-", start + len - 1));
  req.body_source = body.get();
  req.on_upload_progress = [this, start](int64_t sent) { ReportProgress(start + sent, false); };
  absl::StatusOr<HttpResponse> resp = Send(req);
  if (!resp.ok()) return resp.status();
  bytes_sent_ += resp->bytes_sent;
  if (resp->status == 400) RETURN_IF_ERROR(RefusedSmallParts());
  if (resp->status == 202 || resp->status == 201 || resp->status == 204) {
    TakeLocation(*resp, req.url);
    // Track acknowledged bytes ourselves: some registries (ECR) stop
    // advancing Range after the first chunk.
    offset_ = start + len;
    if (len < kMinStoragePart && offset_ < job_.size) small_part_sent_ = true;
    ReportProgress(offset_, true);
    return absl::OkStatus();
  }
  if (resp->status == 416) {
    chunk_refused_ = true;
    return absl::OutOfRangeError("PATCH answered 416: asking where to resume");
  }
  if (resp->status == 404) return absl::AbortedError("upload session lost (PATCH answered 404)");
  return StatusFromHttp(*resp, "PATCH blob chunk");
}

absl::Status BlobUploader::Commit() {
  HttpRequest req;
  req.method = "PUT";
  req.url = CommitUrl(location_, job_.digest);
  req.headers.emplace_back("Content-Type", kOctetStream);
  // The held tail (if any) goes with the commit, once it is ready.
  std::unique_ptr<BodySource> tail;
  const int64_t start = offset_;
  if (start < job_.size) {
    if (absl::Status ready = job_.blob->Prepare(start); !ready.ok()) {
      source_failed_ = true;
      return ready;
    }
    tail = job_.blob->Range(start, job_.size - start);
    req.body_source = tail.get();
    req.on_upload_progress = [this, start](int64_t sent) { ReportProgress(start + sent, false); };
  }
  // Finalising can take minutes on some registries (a storage-side move or a
  // virus scan) with no byte moving: the stall limit must not cut it off.
  req.stall_timeout = kCommitStallTimeout;
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  bytes_sent_ += resp.bytes_sent;
  if (resp.status == 201 || resp.status == 204) {
    offset_ = job_.size;
    return absl::OkStatus();
  }
  if (resp.status == 400) RETURN_IF_ERROR(RefusedSmallParts());
  if (resp.status == 404) return absl::AbortedError("upload session lost (PUT answered 404)");
  if (resp.status == 416) return absl::OutOfRangeError("PUT answered 416: asking where to resume");
  return StatusFromHttp(resp, "PUT blob (commit)");
}

absl::Status BlobUploader::RefusedSmallParts() {
  if (!small_part_sent_ || part_floor_) return absl::OkStatus();
  // A 400 after a part under 5 MiB: the registry wants bigger parts (ECR
  // refuses them at the next PATCH or at the commit). Drop this session and
  // start again with 5 MiB parts, once.
  part_floor_ = true;
  small_part_sent_ = false;
  Abandon();
  offset_ = 0;
  LogInfo("upload of ", job_.digest, " to ", job_.repo.String(),
          ": the registry refused parts under 5 MiB; starting again with 5 MiB parts");
  return absl::AbortedError(
      "the registry refused parts under 5 MiB; starting again with 5 MiB parts");
}

// Asks the registry how many bytes the session holds and where it now lives.
absl::Status BlobUploader::Recover() {
  if (commit_failed_) {
    ASSIGN_OR_RETURN(landed_, BlobExists());
    if (landed_) return absl::OkStatus();
  }
  if (location_.empty()) return absl::OkStatus();
  HttpRequest req;
  req.method = "GET";
  req.url = location_;
  ASSIGN_OR_RETURN(HttpResponse resp, Send(req));
  if (resp.status == 404 || resp.status == 400 || resp.status == 405) {
    // 404: the session is gone (distribution 2.8 drops one that was touched
    // with a stale _state). 400/405: the registry has no upload-status
    // endpoint (go-containerregistry's answers 400), so where it stands is
    // unknown. Either way nothing can be resumed: open a fresh session.
    LogInfo("upload of ", job_.digest, " to ", job_.repo.String(),
            resp.status == 404 ? ": session gone" : ": the registry cannot say where it is",
            ", starting a fresh session");
    location_.clear();
    offset_ = 0;
    return absl::OkStatus();
  }
  if (resp.status != 204 && resp.status != 202 && resp.status != 200) {
    return StatusFromHttp(resp, "GET upload status");
  }
  TakeLocation(resp, req.url);
  std::optional<int64_t> held = HeldFromRange(resp.Header("range"));
  if (held.has_value()) {
    int64_t now_held = *held;
    if (now_held == 1 && offset_ == 0) now_held = 0;  // "0-0" also means empty
    if (now_held > job_.size) {
      return absl::AbortedError("registry holds more bytes than the blob has");
    }
    if (chunk_refused_ && now_held == offset_ && chunk_ > min_chunk_) {
      // The registry is exactly where we were, yet refused the chunk: it is
      // the chunk's size it minds (GHCR refuses Content-Range chunks over
      // 4 MiB with 416). Go on with smaller ones.
      chunk_ = std::max(min_chunk_, chunk_ / 2);
      LogInfo("upload of ", job_.digest, " to ", job_.repo.String(), ": chunk refused, using ",
              chunk_, "-byte chunks");
    }
    // Bytes a PATCH had acknowledged stay counted (ECR's Range can stop
    // advancing), unless the registry has just refused that offset (416).
    offset_ = refused_offset_ ? now_held : std::max(offset_, now_held);
  }
  chunk_refused_ = false;
  refused_offset_ = false;
  commit_failed_ = false;
  return absl::OkStatus();
}

void BlobUploader::Abandon() {
  if (location_.empty()) return;
  // Not cancellable (this is the clean-up after a cancel), but short: a
  // registry that does not answer within seconds keeps its session.
  constexpr absl::Duration kCleanupStall = absl::Seconds(5);
  constexpr absl::Duration kCleanupLimit = absl::Seconds(10);
  if (interrupted_) {
    // A request died under us: ask where the session is now, so the DELETE
    // carries its newest Location (registries that keep a cut body, like
    // distribution v3, answer; others have nothing more to say).
    HttpRequest status;
    status.method = "GET";
    status.url = location_;
    status.stall_timeout = kCleanupStall;
    status.total_timeout = kCleanupLimit;
    absl::StatusOr<HttpResponse> resp = client_->Send(job_.who, job_.endpoint, scopes_, status);
    if (resp.ok() && resp->status >= 200 && resp->status < 300) TakeLocation(*resp, status.url);
  }
  HttpRequest req;
  req.method = "DELETE";
  req.url = location_;
  req.stall_timeout = kCleanupStall;
  req.total_timeout = kCleanupLimit;
  absl::StatusOr<HttpResponse> resp = client_->Send(job_.who, job_.endpoint, scopes_, std::move(req));
  // A 404 is "already gone", except after a cut request: then it is 2.8
  // refusing a session it still holds.
  const bool gone = resp.ok() && resp->status == 404 && !interrupted_;
  if (!resp.ok() ||
      (resp->status != 204 && resp->status != 202 && resp->status != 200 && !gone)) {
    LogWarning(
        "could not delete the abandoned upload session for ", job_.digest, " in ",
        job_.repo.String(), ": ",
        resp.ok() ? StatusFromHttp(*resp, "DELETE upload").message() : resp.status().message(),
        interrupted_ ? " (a request was cut mid-body; the registry's purge will remove it)" : "");
  }
  location_.clear();
}

absl::StatusOr<LayerOutcomeKind> BlobUploader::Fail(absl::Status st) {
  Abandon();
  if (absl::IsOutOfRange(st) || absl::IsAborted(st)) {
    return absl::UnavailableError(st.message());
  }
  return st;
}

absl::StatusOr<LayerOutcomeKind> BlobUploader::Run() {
  const RetryPolicy policy = job_.retry.Sanitised();
  int attempt = 1;
  bool checked_exists = false;
  bool tried_mount = job_.mount_from.empty();
  while (true) {
    if (Cancelled()) return Fail(absl::CancelledError("upload cancelled"));
    absl::Status st;
    bool done = false;
    if (!checked_exists) {
      absl::StatusOr<bool> exists = BlobExists();
      st = exists.status();
      if (st.ok()) {
        checked_exists = true;
        if (*exists) return LayerOutcomeKind::kExisted;
      }
    } else if (!tried_mount) {
      absl::StatusOr<bool> mounted = TryMount();
      st = mounted.status();
      if (st.ok()) {
        tried_mount = true;
        if (*mounted) return LayerOutcomeKind::kMounted;
      }
    } else if (must_recover_) {
      st = Recover();
      if (st.ok()) {
        must_recover_ = false;
        done = landed_;  // the failed commit had landed after all
      }
    } else if (job_.blob == nullptr) {
      // Named by digest only: it had to be there already (or mountable).
      return Fail(absl::FailedPreconditionError(absl::StrCat(
          "blob ", job_.digest, " is not in ", job_.repo.String(),
          job_.mount_from.empty() ? "" : absl::StrCat(" and could not be mounted from ",
                                                      job_.mount_from),
          "; upload it first (UploadBlob) or give its bytes")));
    } else if (location_.empty()) {
      st = OpenSession();
    } else if (offset_ == 0 && job_.size <= std::min(job_.monolithic_threshold, chunk_) &&
               (job_.held_tail <= 0 || job_.size <= job_.held_tail)) {
      // One PUT, unless the registry's OCI-Chunk-Max-Length is smaller.
      st = SendMonolithic();
      done = st.ok();
      commit_failed_ = !st.ok();
    } else if (offset_ < TailStart()) {
      st = SendChunk();
    } else {
      st = Commit();
      done = st.ok();
      commit_failed_ = !st.ok();
    }
    if (done) return LayerOutcomeKind::kUploaded;
    if (st.ok()) {
      // Only bytes the registry never held before count as progress, so a
      // registry that keeps dropping sessions cannot keep us going forever.
      if (offset_ > high_water_) {
        high_water_ = offset_;
        attempt = 1;
      }
      continue;
    }
    if (Cancelled() || absl::IsCancelled(st)) return Fail(absl::CancelledError("upload cancelled"));
    if (source_failed_ || !Retryable(st)) return Fail(st);
    refused_offset_ = absl::IsOutOfRange(st);
    if (attempt >= policy.max_attempts) {
      return Fail(absl::Status(
          st.code(), absl::StrCat(st.message(), " (gave up after ", attempt, " attempts)")));
    }
    absl::Duration wait = NextRetryWait(policy, attempt, retry_after_);
    // Session-level hiccups (416, lost session) resume at once.
    if (absl::IsOutOfRange(st)) wait = absl::ZeroDuration();
    if (job_.observer != nullptr) job_.observer->Retry(RetryReason(st));
    if (job_.events.on_retry) {
      job_.events.on_retry(
          RetryNotice{attempt, policy.max_attempts, std::string(st.message()), wait});
    }
    ++attempt;
    if (!Sleep(wait)) return Fail(absl::CancelledError("upload cancelled"));
    // Before data goes out again, ask the registry where we are.
    must_recover_ = !location_.empty() || commit_failed_;
  }
}

}  // namespace regd
