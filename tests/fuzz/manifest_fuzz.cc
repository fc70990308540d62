// Fuzzes manifests, indexes and image configs: DetectManifestKind,
// ParseManifest, ParseIndex, ParseImageConfig; what parses is serialised and
// parsed again, and matched against a few platforms.
//
// Input: one selector byte (its value modulo the table size picks the
// Content-Type the body arrived with), then the body.
#include <cstddef>
#include <cstdint>
#include <iterator>

#include "core/manifest/manifest.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr absl::string_view kContentTypes[] = {
    "",  // none: detected from mediaType or shape
    regd::media::kOciManifest,
    regd::media::kOciIndex,
    regd::media::kDockerManifest,
    regd::media::kDockerList,
    regd::media::kOciConfig,
    "application/json; charset=utf-8",
    "application/vnd.oci.image.index.v1+json; charset=utf-8",
};

void CheckIndex(const regd::Index& idx) {
  const regd::Platform wants[] = {
      {"linux", "amd64", "", ""}, {"linux", "arm64", "v8", ""},
      {"linux", "arm", "", ""},   {"windows", "amd64", "", "10.0.17763.1"},
      {"", "", "", ""},
  };
  for (const regd::Platform& want : wants) {
    std::optional<size_t> i = regd::MatchIndex(idx, want);
    if (i.has_value()) {
      FUZZ_CHECK(*i < idx.manifests.size());
      FUZZ_CHECK(idx.manifests[*i].platform.has_value());
    }
  }
  std::optional<size_t> d = regd::DefaultIndexEntry(idx);
  FUZZ_CHECK(d.has_value() == !idx.manifests.empty());
  if (d.has_value()) FUZZ_CHECK(*d < idx.manifests.size());
  for (const regd::Descriptor& m : idx.manifests) {
    if (m.platform.has_value()) {
      (void)regd::NormalisePlatform(*m.platform);
      (void)m.platform->String();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view body = regd::fuzz::AsView(data, size);
  const uint8_t selector = regd::fuzz::TakeByte(&body);
  const absl::string_view content_type = kContentTypes[selector % std::size(kContentTypes)];

  (void)regd::BareMediaType(content_type);
  (void)regd::DetectManifestKind(content_type, body);

  absl::StatusOr<regd::Manifest> m = regd::ParseManifest(body, content_type);
  if (m.ok()) {
    const std::string out = regd::SerializeManifest(*m);
    absl::StatusOr<regd::Manifest> again = regd::ParseManifest(out, m->media_type);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->layers.size() == m->layers.size());
    FUZZ_CHECK(regd::SerializeManifest(*again) == out);
  }

  absl::StatusOr<regd::Index> idx = regd::ParseIndex(body, content_type);
  if (idx.ok()) {
    CheckIndex(*idx);
    const std::string out = regd::SerializeIndex(*idx);
    absl::StatusOr<regd::Index> again = regd::ParseIndex(out, idx->media_type);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->manifests.size() == idx->manifests.size());
    FUZZ_CHECK(regd::SerializeIndex(*again) == out);
  }

  absl::StatusOr<regd::ImageConfigInfo> config = regd::ParseImageConfig(body);
  if (config.ok()) (void)config->platform.String();

  // The platform grammar too, on the same bytes.
  absl::StatusOr<regd::Platform> p = regd::ParsePlatform(body);
  if (p.ok()) (void)regd::PlatformMatches(*p, regd::NormalisePlatform(*p));
  return 0;
}
