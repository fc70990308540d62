// Image references: the docker reference grammar, docker.io normalisation and
// digest validation.
//
// A Reference is a plain value type (copyable, immutable after parsing, safe to
// share between threads). Parsing never throws; a malformed input yields
// INVALID_ARGUMENT with a message naming what is wrong.
#ifndef REGD_CORE_REFERENCE_REFERENCE_H_
#define REGD_CORE_REFERENCE_REFERENCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regd {

// The canonical name of Docker Hub in references, and the host its API lives on.
inline constexpr absl::string_view kDockerHubDomain = "docker.io";
inline constexpr absl::string_view kDockerHubApiHost = "registry-1.docker.io";

// Validates "algorithm:hex". Only sha256 (64 hex) and sha512 (128 hex) are
// accepted, lower-case hex only.
[[nodiscard]] absl::Status ValidateDigest(absl::string_view digest);
// A tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
[[nodiscard]] absl::Status ValidateTag(absl::string_view tag);

// A repository on a registry: "docker.io" + "library/alpine".
struct Repository {
  std::string registry;  // as named in references: "docker.io", "localhost:5000"
  std::string path;      // "library/alpine", "team/app/web"

  // The host[:port] the registry API is spoken to.
  std::string ApiHost() const;
  // "registry/path".
  std::string String() const { return registry + "/" + path; }
};

// A parsed, normalised image reference. At least one of tag and digest is set
// (a reference with neither gets tag "latest").
struct Reference {
  Repository repo;
  std::string tag;     // may be empty when digest is set
  std::string digest;  // "sha256:..." or empty

  // The manifest identifier for the API: digest when present, else tag.
  const std::string& Identifier() const { return digest.empty() ? tag : digest; }
  // Fully-qualified form: "docker.io/library/alpine:3.19@sha256:...".
  std::string String() const;
};

// Parses a full reference ("alpine", "ghcr.io/a/b:tag@sha256:...").
[[nodiscard]] absl::StatusOr<Reference> ParseReference(absl::string_view ref);

// Parses a repository name without tag or digest ("alpine", "localhost:5000/a/b").
[[nodiscard]] absl::StatusOr<Repository> ParseRepository(absl::string_view name);

}  // namespace regd

#endif  // REGD_CORE_REFERENCE_REFERENCE_H_
