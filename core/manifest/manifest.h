// OCI and Docker manifests, indexes and image configs: media types, parsing
// (RapidJSON), serialisation, and platform matching.
//
// Value types and pure functions; thread-compatible.
#ifndef REGD_CORE_MANIFEST_MANIFEST_H_
#define REGD_CORE_MANIFEST_MANIFEST_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace regd {

namespace media {
inline constexpr absl::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr absl::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr absl::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr absl::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr absl::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr absl::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr absl::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr absl::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
// The Accept header value for manifest requests.
inline constexpr absl::string_view kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media

// Largest manifest or config regd reads into memory.
inline constexpr size_t kMaxManifestBytes = 4 << 20;

bool IsIndexMediaType(absl::string_view mt);
bool IsManifestMediaType(absl::string_view mt);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string os_version;

  bool empty() const { return os.empty() && architecture.empty() && variant.empty(); }
  // "linux/arm64/v8".
  std::string String() const;
};

// Parses "os/arch[/variant]".
[[nodiscard]] absl::StatusOr<Platform> ParsePlatform(absl::string_view s);

// Normalises as containerd does: lower-case os/arch; aliases (x86_64→amd64,
// aarch64→arm64, armhf→arm/v7, armel→arm/v6, i386→386); arm64 with variant v8
// → no variant; arm with no variant → v7; amd64 variant v1 → no variant.
Platform NormalisePlatform(const Platform& p);

// True when `have` (an index entry's platform) satisfies `want`. Both are
// normalised first. An empty `want.variant` matches any variant.
bool PlatformMatches(const Platform& want, const Platform& have);

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;  // index entries only, when present
  std::vector<std::string> urls;
};

// A single-image manifest (OCI manifest or Docker schema2).
struct Manifest {
  int64_t schema_version = 2;
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

// An OCI index or Docker manifest list.
struct Index {
  int64_t schema_version = 2;
  std::string media_type;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// What a manifest body is, from its Content-Type, else its mediaType field,
// else its shape ("manifests" → index, "layers"/"config" → manifest).
enum class ManifestKind { kIndex, kManifest };
[[nodiscard]] absl::StatusOr<ManifestKind> DetectManifestKind(absl::string_view content_type,
                                                              absl::string_view body);

[[nodiscard]] absl::StatusOr<Manifest> ParseManifest(absl::string_view body,
                                                     absl::string_view content_type = "");
[[nodiscard]] absl::StatusOr<Index> ParseIndex(absl::string_view body,
                                               absl::string_view content_type = "");

// From an image config: its Labels, and its platform (os, architecture, variant).
struct ImageConfigInfo {
  std::map<std::string, std::string> labels;
  Platform platform;
};
[[nodiscard]] absl::StatusOr<ImageConfigInfo> ParseImageConfig(absl::string_view body);

// Serialises canonical JSON for pushing.
std::string SerializeManifest(const Manifest& m);
std::string SerializeIndex(const Index& idx);

// The index entry to use for `want`, or nullopt. Entries without a platform
// never match.
std::optional<size_t> MatchIndex(const Index& idx, const Platform& want);
// The default child: linux/amd64, else the first entry; nullopt when empty.
std::optional<size_t> DefaultIndexEntry(const Index& idx);

// Strips parameters: "application/json; charset=utf-8" → "application/json".
std::string BareMediaType(absl::string_view content_type);

}  // namespace regd

#endif  // REGD_CORE_MANIFEST_MANIFEST_H_
