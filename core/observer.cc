#include "core/observer.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace regd {

Observer* NullObserver() {
  static Observer* const kNull = new Observer();
  return kNull;
}

std::string RetryReason(const absl::Status& st) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(st.code()));
}

absl::string_view RegistryOperationOf(absl::string_view url) {
  // The path, without scheme, host and query.
  size_t scheme = url.find("://");
  if (scheme != absl::string_view::npos) {
    size_t slash = url.find('/', scheme + 3);
    url = slash == absl::string_view::npos ? absl::string_view("/") : url.substr(slash);
  }
  url = url.substr(0, url.find('?'));
  if (url == "/v2/" || url == "/v2") return "ping";
  if (!absl::StartsWith(url, "/v2/")) return "other";
  if (absl::StrContains(url, "/blobs/uploads")) return "upload";
  if (absl::StrContains(url, "/manifests/")) return "manifest";
  if (absl::StrContains(url, "/blobs/")) return "blob";
  return "other";
}

}  // namespace regd
