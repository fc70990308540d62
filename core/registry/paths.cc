#include "core/registry/paths.h"

#include "absl/strings/str_cat.h"
#include "core/http/http.h"

namespace regd {

std::string PingPath() { return "/v2/"; }
std::string ManifestPath(const Repository& repo, absl::string_view reference) {
  return absl::StrCat("/v2/", repo.path, "/manifests/", reference);
}
std::string BlobPath(const Repository& repo, absl::string_view digest) {
  return absl::StrCat("/v2/", repo.path, "/blobs/", digest);
}
std::string UploadsPath(const Repository& repo) {
  return absl::StrCat("/v2/", repo.path, "/blobs/uploads/");
}
std::string MountPath(const Repository& repo, absl::string_view digest,
                      absl::string_view from_path) {
  return absl::StrCat(UploadsPath(repo), "?mount=", UrlEncode(digest),
                      "&from=", UrlEncode(from_path));
}
std::string CommitUrl(absl::string_view location, absl::string_view digest) {
  const char* sep = location.find('?') == absl::string_view::npos ? "?" : "&";
  return absl::StrCat(location, sep, "digest=", UrlEncode(digest));
}

}  // namespace regd
