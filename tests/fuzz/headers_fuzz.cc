// Fuzzes the header values regd acts on: Retry-After (ParseRetryAfter, then
// NextRetryWait), an upload's Range (BytesHeldFromRange; the same text as a
// download's Content-Range, ParseContentRange) and Location
// (ResolveUrl against the request URL, UrlOrigin of both, then the egress
// policy's CheckHop). A hop the policy allows must be allowed as libcurl, which
// makes the connection, parses the URL too.
//
// Input: "retry-after\nrange\nbase-url\nlocation" (missing parts are empty;
// the location keeps any further newlines).
#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "core/http/egress.h"
#include "core/http/http.h"
#include "core/read/blob_reader.h"
#include "core/registry/client.h"
#include "core/retry/retry.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const regd::EgressPolicy& Policy() {
  static const regd::EgressPolicy* policy = [] {
    regd::EgressOptions o;
    o.allowed_registries = {"registry.example.com", "*.example.net", "localhost:5000",
                            "[::1]:5000"};
    o.insecure_registries = {"localhost:5000"};
    return new regd::EgressPolicy(o);
  }();
  return *policy;
}

// A part of a URL as curl parses it, or "" when it has none.
std::string CurlPart(CURLU* u, CURLUPart part) {
  char* value = nullptr;
  if (curl_url_get(u, part, &value, 0) != CURLUE_OK || value == nullptr) return "";
  std::string out(value);
  curl_free(value);
  return out;
}

// The URL as curl gets it (CURLOPT_URL takes a C string) and sees it: where
// curl would connect must pass the policy too. (curl percent-decodes the host,
// so the names differ at times; what must not differ is the verdict.)
void CheckCurlAgrees(const std::string& url, const std::string& host_port) {
  CURLU* u = curl_url();
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
    const std::string host = CurlPart(u, CURLUPART_HOST);
    const std::string port = CurlPart(u, CURLUPART_PORT);
    const std::string curl_url =
        CurlPart(u, CURLUPART_SCHEME) + "://" + host + (port.empty() ? "" : ":" + port) + "/";
    const absl::Status st = Policy().CheckHop("", curl_url);
    if (!st.ok()) {
      std::fprintf(stderr, "regd allowed host \"%s\"; curl connects to \"%s\": %s\n",
                   host_port.c_str(), curl_url.c_str(), std::string(st.message()).c_str());
    }
    FUZZ_CHECK(st.ok());
  }
  curl_url_cleanup(u);
}

void CheckHop(absl::string_view from, const std::string& to) {
  // CheckHop does not refuse a NUL byte, after which curl (given a C string)
  // sees another host; but curl refuses such a header ("Nul byte in header"),
  // so no Location with one gets here. See tests/fuzz/crashes/README.md.
  if (to.find('\0') != std::string::npos) return;
  if (!Policy().CheckHop(from, to).ok()) return;
  const std::string lower = absl::AsciiStrToLower(to.substr(0, 8));
  FUZZ_CHECK(absl::StartsWith(lower, "https://") || absl::StartsWith(lower, "http://"));
  if (absl::StartsWithIgnoreCase(from, "https://")) FUZZ_CHECK(absl::StartsWith(lower, "https://"));
  const std::string host_port = regd::UrlHostPort(to);
  FUZZ_CHECK(!host_port.empty());
  // A hop within the origin it came from is not checked against the list (that
  // origin was); any other must be to an allowed registry, and must be the one
  // curl connects to.
  if (regd::UrlOrigin(from) == regd::UrlOrigin(to)) return;
  FUZZ_CHECK(Policy().CheckRegistry(host_port).ok());
  CheckCurlAgrees(to, host_port);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<absl::string_view> parts =
      regd::fuzz::SplitInto(regd::fuzz::AsView(data, size), '\n', 4);

  // A fixed "now" keeps runs reproducible.
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  std::optional<absl::Duration> wait = regd::ParseRetryAfter(parts[0], now);
  if (wait.has_value()) FUZZ_CHECK(*wait >= absl::ZeroDuration());
  regd::RetryPolicy policy;
  const absl::Duration cap = absl::Minutes(10);
  absl::Duration next = regd::NextRetryWait(policy.Sanitised(), 1, wait, cap);
  FUZZ_CHECK(next >= absl::ZeroDuration());
  if (wait.has_value()) FUZZ_CHECK(next >= std::min(*wait, cap));

  std::optional<int64_t> held = regd::BytesHeldFromRange(parts[1]);
  if (held.has_value()) FUZZ_CHECK(*held >= 1);
  // The same text as a download's Content-Range (ReadBlobResumable).
  std::optional<regd::ContentRange> cr = regd::ParseContentRange(parts[1]);
  if (cr.has_value()) {
    FUZZ_CHECK(cr->first >= 0 && cr->last >= cr->first);
    FUZZ_CHECK(cr->total == -1 || cr->total > cr->last);
  }

  const std::string resolved = regd::ResolveUrl(parts[2], parts[3]);
  (void)regd::UrlOrigin(parts[2]);
  (void)regd::UrlOrigin(parts[3]);
  (void)regd::UrlOrigin(resolved);
  CheckHop(parts[2], resolved);
  CheckHop("", std::string(parts[3]));
  return 0;
}
