#include "core/read/blob_reader.h"

#include <algorithm>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/observer.h"
#include "core/status_macros.h"

namespace regd {
namespace {

// A Retry-After on a read is honoured up to this; longer fails the call.
constexpr absl::Duration kRetryAfterCap = absl::Seconds(10);

int64_t ContentLengthOf(const HttpResponse& resp) {
  int64_t n = -1;
  std::optional<std::string> h = resp.Header("content-length");
  if (h.has_value() && absl::SimpleAtoi(*h, &n) && n >= 0) return n;
  return -1;
}

}  // namespace

std::optional<ContentRange> ParseContentRange(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  if (!absl::ConsumePrefix(&v, "bytes ")) return std::nullopt;
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == absl::string_view::npos || slash == absl::string_view::npos || dash > slash) {
    return std::nullopt;
  }
  ContentRange r;
  if (!absl::SimpleAtoi(v.substr(0, dash), &r.first) ||
      !absl::SimpleAtoi(v.substr(dash + 1, slash - dash - 1), &r.last) || r.first < 0 ||
      r.last < r.first) {
    return std::nullopt;
  }
  absl::string_view total = v.substr(slash + 1);
  if (total != "*" && (!absl::SimpleAtoi(total, &r.total) || r.total <= r.last)) {
    return std::nullopt;
  }
  return r;
}

RetryPolicy DefaultBlobReadRetry() {
  RetryPolicy p;
  p.max_attempts = 5;
  p.initial_delay = absl::Milliseconds(200);
  p.factor = 2.0;
  p.jitter = 0.2;
  p.max_delay = absl::Seconds(3);
  return p;
}

absl::StatusOr<BlobReadResult> ReadBlobResumable(RegistryApi& api, const Repository& repo,
                                                 const std::string& digest, const BlobRead& read) {
  if (read.offset < 0) return absl::InvalidArgumentError("offset must not be negative");
  const RetryPolicy policy = read.retry.Sanitised();
  BlobReadResult out;
  out.size = read.size;
  int64_t pos = read.offset;  // the next byte the sink wants
  bool closed_ranges = false;
  int failures = 0;  // attempts in a row that moved no bytes
  for (bool first = true;; first = false) {
    if (out.size >= 0 && pos >= out.size) {
      if (pos > out.size) {
        return absl::OutOfRangeError(absl::StrCat(
            "offset ", read.offset, " is past the end of the blob (", out.size, " bytes)"));
      }
      break;  // everything delivered (or an empty blob)
    }
    if (!first) ++out.resumes;
    int64_t last = -1;
    if (closed_ranges && pos > 0) {
      if (out.size < 0) {
        ASSIGN_OR_RETURN(std::optional<int64_t> size, api.HeadBlob(repo, digest));
        if (!size.has_value()) return absl::NotFoundError("image reference not found");
        if (*size < 0) {
          return absl::FailedPreconditionError(
              "the registry takes only closed ranges and does not say the blob's size");
        }
        out.size = *size;
        continue;  // re-check pos against the size
      }
      last = out.size - 1;
    }

    absl::Status wrong;    // this answer is another blob (DATA_LOSS)
    int64_t skip = 0;      // bytes before `pos` in this answer, to drop
    int64_t moved = 0;     // bytes delivered by this attempt
    bool stopped = false;  // the sink said stop
    auto on_head = [&](const HttpResponse& head) -> bool {
      if (head.status != 200 && head.status != 206) {
        wrong = absl::FailedPreconditionError(
            absl::StrCat("the registry answered a blob GET with HTTP ", head.status));
        return false;
      }
      std::string served = head.Header("docker-content-digest").value_or("");
      // Compared only in the same algorithm (a registry may name a blob by
      // its sha512 too).
      if (ValidateDigest(served).ok() && served != digest &&
          served.substr(0, served.find(':')) == digest.substr(0, digest.find(':'))) {
        wrong = absl::DataLossError(
            absl::StrCat("the registry served blob ", served, " when asked for ", digest));
        return false;
      }
      int64_t total = -1;
      if (head.status == 206) {
        std::optional<ContentRange> cr =
            ParseContentRange(head.Header("content-range").value_or(""));
        if (!cr.has_value()) {
          wrong = absl::DataLossError("a 206 answer to a blob GET without a valid Content-Range");
          return false;
        }
        if (cr->first > pos) {
          wrong = absl::DataLossError(absl::StrCat("the registry served bytes from ", cr->first,
                                                   " when asked for bytes from ", pos));
          return false;
        }
        skip = pos - cr->first;
        total = cr->total;
      } else {
        skip = pos;  // a whole blob: Range ignored (or none sent)
        total = ContentLengthOf(head);
      }
      if (total >= 0) {
        if (out.size >= 0 && total != out.size) {
          wrong = absl::DataLossError(absl::StrCat("the registry serves ", digest, " with ", total,
                                                   " bytes now, ", out.size,
                                                   " bytes before: another blob"));
          return false;
        }
        out.size = total;
      }
      return true;
    };
    auto on_body = [&](long, absl::string_view data) -> bool {
      if (skip > 0) {
        size_t drop = static_cast<size_t>(std::min<int64_t>(skip, data.size()));
        data.remove_prefix(drop);
        skip -= static_cast<int64_t>(drop);
        if (data.empty()) return true;
      }
      if (out.size >= 0 && pos + static_cast<int64_t>(data.size()) > out.size) {
        wrong = absl::DataLossError(
            absl::StrCat("the registry sent more than the blob's ", out.size, " bytes"));
        return false;
      }
      if (read.verify != nullptr) read.verify->Update(data);
      pos += static_cast<int64_t>(data.size());
      moved += static_cast<int64_t>(data.size());
      out.delivered += static_cast<int64_t>(data.size());
      if (!read.sink(data)) {
        stopped = true;
        return false;
      }
      return true;
    };
    absl::StatusOr<HttpResponse> resp =
        api.GetBlobStream(repo, digest, pos, last, on_body, on_head, read.receive_buffer);
    if (!wrong.ok()) return wrong;
    if (stopped) return absl::CancelledError("reader went away");
    if (api.cancelled() && api.cancelled()->load()) return absl::CancelledError("cancelled");

    absl::Status failure;
    std::optional<absl::Duration> retry_after;
    if (resp.ok()) {
      const long status = resp->status;
      if (status == 200 || status == 206) {
        // A body-less 2xx never reached on_head: judge its headers now.
        if (moved == 0 && !on_head(*resp)) return wrong;
        if (out.size < 0 || pos >= out.size) break;  // done (a size-less body ends at its end)
        failure = absl::UnavailableError(
            absl::StrCat("the blob's body ended after ", pos, " of ", out.size, " bytes"));
      } else if (status == 416 && pos > 0 && !closed_ranges) {
        closed_ranges = true;  // bytes=a- refused: ask again with a closed range
        continue;
      } else if (status == 416) {
        return absl::OutOfRangeError(
            absl::StrCat("offset ", read.offset, " is past the end of the blob"));
      } else if (IsRetryableHttpStatus(status)) {
        failure = StatusFromHttp(*resp, "GET blob", NotFoundMeaning::kImage);
        retry_after = RetryAfterOf(*resp, api.clock()->Now());
      } else {
        return StatusFromHttp(*resp, "GET blob", NotFoundMeaning::kImage);
      }
    } else if (absl::IsUnavailable(resp.status())) {
      failure = resp.status();
    } else {
      return resp.status();
    }

    if (moved > 0) failures = 0;  // progress: a fresh budget
    ++failures;
    if (failures >= policy.max_attempts) {
      return absl::Status(failure.code(), absl::StrCat(failure.message(), " (after ", failures,
                                                       failures == 1 ? " attempt" : " attempts",
                                                       " without progress, at byte ", pos, ")"));
    }
    absl::Duration wait = NextRetryWait(policy, failures, retry_after, kRetryAfterCap);
    api.observer()->Retry(RetryReason(failure));
    if (read.on_retry) {
      read.on_retry(RetryNotice{failures, policy.max_attempts,
                                absl::StrCat(failure.message(), "; resuming at byte ", pos), wait});
    }
    if (!SleepUnlessCancelled(wait, api.cancelled().get())) {
      return absl::CancelledError("cancelled");
    }
  }
  if (read.verify != nullptr) {
    std::string got = read.verify->Finish();
    if (got != digest) {
      return absl::DataLossError(
          absl::StrCat("blob digest mismatch: expected ", digest, ", content hashes to ", got));
    }
  }
  return out;
}

}  // namespace regd
