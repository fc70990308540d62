// The paths of the distribution v2 API, relative to a registry's base URL.
// Every /v2/ URL regd sends is built here (RegistryApi, the uploader, the
// Authenticator's ping).
#ifndef REGD_CORE_REGISTRY_PATHS_H_
#define REGD_CORE_REGISTRY_PATHS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "core/reference/reference.h"

namespace regd {

// "/v2/": the API root, which answers with the registry's challenge.
std::string PingPath();
std::string ManifestPath(const Repository& repo, absl::string_view reference);
std::string BlobPath(const Repository& repo, absl::string_view digest);
std::string UploadsPath(const Repository& repo);
std::string MountPath(const Repository& repo, absl::string_view digest,
                      absl::string_view from_path);
// An upload session's Location with ?digest= (or &digest=) appended.
std::string CommitUrl(absl::string_view location, absl::string_view digest);

}  // namespace regd

#endif  // REGD_CORE_REGISTRY_PATHS_H_
