#include "core/registry/client.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/json.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "rapidjson/document.h"

namespace regd {
namespace {

// "CODE: message" from a registry error body, or "".
std::string RegistryErrorText(const HttpResponse& resp) {
  if (resp.body.empty() || resp.body.size() > (64 << 10)) return "";
  rapidjson::Document doc;
  if (!ParseUntrustedJson(resp.body, "error body", &doc).ok() || !doc.IsObject()) return "";
  auto errs = doc.FindMember("errors");
  if (errs == doc.MemberEnd() || !errs->value.IsArray() || errs->value.Empty()) return "";
  const auto& e = errs->value[0];
  if (!e.IsObject()) return "";
  std::string out;
  auto code = e.FindMember("code");
  if (code != e.MemberEnd() && code->value.IsString()) out = code->value.GetString();
  auto msg = e.FindMember("message");
  if (msg != e.MemberEnd() && msg->value.IsString()) {
    absl::StrAppend(&out, out.empty() ? "" : ": ", msg->value.GetString());
  }
  return out;
}

}  // namespace

std::optional<int64_t> BytesHeldFromRange(absl::string_view r) {
  r = absl::StripAsciiWhitespace(r);
  absl::ConsumePrefix(&r, "bytes=");
  size_t dash = r.find('-');
  if (dash == absl::string_view::npos) return std::nullopt;
  int64_t start = 0;
  int64_t end = 0;
  if (!absl::SimpleAtoi(r.substr(0, dash), &start) || start != 0) return std::nullopt;
  if (!absl::SimpleAtoi(r.substr(dash + 1), &end) || end < 0 ||
      end == std::numeric_limits<int64_t>::max()) {
    return std::nullopt;
  }
  return end + 1;
}

absl::Status StatusFromHttp(const HttpResponse& resp, absl::string_view what,
                            NotFoundMeaning not_found) {
  // The registry's words are hostile text: bounded, valid UTF-8, and with
  // anything that looks like a credential (a proxy may echo ours) redacted.
  std::string detail = ForeignText(RegistryErrorText(resp));
  std::string msg = absl::StrCat(what, ": registry answered ", resp.status);
  if (!detail.empty()) absl::StrAppend(&msg, " (", detail, ")");
  switch (resp.status) {
    case 404:
      if (not_found == NotFoundMeaning::kImage) {
        return absl::NotFoundError("image reference not found");
      }
      return absl::NotFoundError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 429:
      return absl::ResourceExhaustedError(msg);
    case 408:
    case 500:
    case 502:
    case 503:
    case 504:
      return absl::UnavailableError(msg);
    case 400:  // DIGEST_INVALID, SIZE_INVALID, MANIFEST_INVALID, NAME_INVALID, ...
      return absl::InvalidArgumentError(msg);
    case 416:
      return absl::OutOfRangeError(msg);
    default:
      if (resp.status >= 500) return absl::UnavailableError(msg);
      return absl::FailedPreconditionError(msg);
  }
}

absl::StatusOr<HttpResponse> RegistryClient::Exchange(const Endpoint& ep, HttpRequest& req) {
  // Streamed bodies are counted as they arrive; buffered ones at the end.
  int64_t streamed = 0;
  std::function<bool(long, absl::string_view)> sink = req.on_body;
  if (sink) {
    req.on_body = [&sink, &streamed](long status, absl::string_view data) {
      streamed += static_cast<int64_t>(data.size());
      return sink(status, data);
    };
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<HttpResponse> resp = transport_->Send(req);
  if (sink) req.on_body = std::move(sink);
  const absl::Duration took = absl::Now() - start;
  const absl::string_view op = RegistryOperationOf(req.url);
  if (!resp.ok()) {
    observer_->RegistryRequest(ep.registry, op, req.method, 0, took, 0, streamed);
    return resp;
  }
  observer_->RegistryRequest(ep.registry, op, req.method, resp->status, took, resp->bytes_sent,
                             streamed + static_cast<int64_t>(resp->body.size()));
  if (std::optional<std::string> left = resp->Header("ratelimit-remaining")) {
    // "42" or "42;w=21600" (Docker Hub): the number before any ';'.
    double n = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(left->substr(0, left->find(';'))), &n)) {
      observer_->RateLimitRemaining(ep.registry, n);
    }
  }
  return resp;
}

absl::StatusOr<HttpResponse> RegistryClient::Send(const CredentialChain& who, const Endpoint& ep,
                                                  const std::vector<std::string>& scopes,
                                                  HttpRequest req) {
  if (absl::StartsWith(req.url, "/")) req.url = absl::StrCat(ep.base_url, req.url);
  req.ca_bundle = ep.ca_bundle;
  const bool same_origin = UrlOrigin(req.url) == UrlOrigin(ep.base_url);
  if (egress_ != nullptr) {
    RETURN_IF_ERROR(egress_->CheckRegistry(ep.registry));
    // A Location on another host obeys the same rules as a redirect.
    if (!same_origin) RETURN_IF_ERROR(egress_->CheckHop(ep.base_url, req.url));
  }
  const size_t base_headers = req.headers.size();
  std::vector<std::string> wanted = scopes;
  for (int attempt = 0;; ++attempt) {
    req.headers.resize(base_headers);
    std::string authorization;
    if (same_origin) {
      ASSIGN_OR_RETURN(authorization, auth_->Authorize(ep, wanted, who, req.cancelled));
      if (!authorization.empty()) req.headers.emplace_back("Authorization", authorization);
    }
    if (req.body_source != nullptr && attempt > 0) RETURN_IF_ERROR(req.body_source->Rewind());
    ASSIGN_OR_RETURN(HttpResponse resp, Exchange(ep, req));
    if (resp.status != 401 || attempt > 0 || !same_origin) return resp;
    // A 401 from a host we were redirected to (a storage host) says nothing
    // about the registry's auth: its challenge must never replace ours.
    if (!resp.url.empty() && UrlOrigin(resp.url) != UrlOrigin(ep.base_url)) return resp;
    wanted = auth_->OnUnauthorized(ep, wanted, authorization, resp, who);
  }
}

}  // namespace regd
