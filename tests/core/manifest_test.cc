#include "core/manifest/manifest.h"

#include "core/digest.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

constexpr char kD1[] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
constexpr char kD2[] = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
constexpr char kD3[] = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

std::string OciIndex() {
  return std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")") +
         kD1 +
         R"(","size":10,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kD2 +
         R"(","size":11},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kD3 +
         R"(","size":12,"platform":{"os":"linux","architecture":"amd64"},
       "annotations":{"a":"b"}}]})";
}

TEST(Platform, Normalise) {
  EXPECT_EQ(NormalisePlatform({"Linux", "x86_64", "", ""}).String(), "linux/amd64");
  EXPECT_EQ(NormalisePlatform({"linux", "aarch64", "", ""}).String(), "linux/arm64");
  EXPECT_EQ(NormalisePlatform({"linux", "arm64", "v8", ""}).String(), "linux/arm64");
  EXPECT_EQ(NormalisePlatform({"linux", "arm", "", ""}).String(), "linux/arm/v7");
  EXPECT_EQ(NormalisePlatform({"linux", "armhf", "", ""}).String(), "linux/arm/v7");
  EXPECT_EQ(NormalisePlatform({"linux", "armel", "", ""}).String(), "linux/arm/v6");
  EXPECT_EQ(NormalisePlatform({"linux", "i386", "", ""}).String(), "linux/386");
  EXPECT_EQ(NormalisePlatform({"linux", "amd64", "v1", ""}).String(), "linux/amd64");
}

TEST(Platform, Matches) {
  EXPECT_TRUE(PlatformMatches({"linux", "arm64", "", ""}, {"linux", "arm64", "v8", ""}));
  EXPECT_TRUE(PlatformMatches({"linux", "arm64", "v8", ""}, {"linux", "arm64", "", ""}));
  EXPECT_TRUE(PlatformMatches({"LINUX", "AMD64", "", ""}, {"linux", "amd64", "", ""}));
  EXPECT_TRUE(PlatformMatches({"linux", "arm", "", ""}, {"linux", "arm", "v7", ""}));
  EXPECT_FALSE(PlatformMatches({"linux", "arm", "", ""}, {"linux", "arm", "v6", ""}));
  EXPECT_TRUE(PlatformMatches({"linux", "arm", "v6", ""}, {"linux", "arm", "v6", ""}));
  EXPECT_FALSE(PlatformMatches({"linux", "amd64", "", ""}, {"windows", "amd64", "", ""}));
  EXPECT_FALSE(PlatformMatches({"linux", "arm64", "", ""}, {"linux", "amd64", "", ""}));
  EXPECT_FALSE(PlatformMatches({"linux", "arm64", "v9", ""}, {"linux", "arm64", "v8", ""}));
}

TEST(Platform, Parse) {
  auto p = ParsePlatform("linux/arm64/v8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->variant, "v8");
  EXPECT_FALSE(ParsePlatform("linux").ok());
  EXPECT_FALSE(ParsePlatform("linux//v8").ok());
  EXPECT_FALSE(ParsePlatform("a/b/c/d").ok());
}

TEST(Index, ParseAndMatchWithEntryWithoutPlatform) {
  auto idx = ParseIndex(OciIndex());
  ASSERT_TRUE(idx.ok()) << idx.status();
  ASSERT_EQ(idx->manifests.size(), 3u);
  EXPECT_FALSE(idx->manifests[1].platform.has_value());
  EXPECT_EQ(idx->manifests[2].annotations.at("a"), "b");
  EXPECT_EQ(MatchIndex(*idx, {"linux", "arm64", "", ""}), 0u);
  EXPECT_EQ(MatchIndex(*idx, {"linux", "amd64", "", ""}), 2u);
  EXPECT_FALSE(MatchIndex(*idx, {"linux", "s390x", "", ""}).has_value());
  EXPECT_EQ(DefaultIndexEntry(*idx), 2u);  // linux/amd64 beats the first entry
}

TEST(Index, DefaultIsFirstWithoutAmd64) {
  Index idx;
  idx.manifests.resize(2);
  EXPECT_EQ(DefaultIndexEntry(idx), 0u);
  EXPECT_FALSE(DefaultIndexEntry(Index{}).has_value());
}

TEST(Manifest, ParseOciWithLayers) {
  std::string body =
      std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")") +
      kD1 + R"(","size":5},"layers":[{"mediaType":"l","digest":")" + kD2 +
      R"(","size":7,"annotations":{"x":"y"}}],"annotations":{"k":"v"}})";
  auto m = ParseManifest(body);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config.digest, kD1);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 7);
  EXPECT_EQ(m->layers[0].annotations.at("x"), "y");
  EXPECT_EQ(m->annotations.at("k"), "v");
  // Serialise and parse again: same content.
  auto again = ParseManifest(SerializeManifest(*m));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->layers[0].digest, kD2);
}

TEST(Manifest, RejectsBadDescriptors) {
  EXPECT_FALSE(ParseManifest(R"({"config":{"digest":"sha256:x","size":1}})").ok());
  EXPECT_FALSE(
      ParseManifest(std::string(R"({"config":{"digest":")") + kD1 + R"(","size":-1}})").ok());
  EXPECT_FALSE(ParseManifest("not json").ok());
  EXPECT_FALSE(ParseManifest("[]").ok());
  EXPECT_FALSE(ParseIndex(R"({"manifests":{}})").ok());
}

TEST(Manifest, SizeCap) {
  std::string big(kMaxManifestBytes + 1, ' ');
  auto m = ParseManifest(big);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(Manifest, DetectKind) {
  EXPECT_EQ(*DetectManifestKind("application/vnd.oci.image.index.v1+json", "{}"),
            ManifestKind::kIndex);
  EXPECT_EQ(*DetectManifestKind(
                "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8", "{}"),
            ManifestKind::kManifest);
  EXPECT_EQ(*DetectManifestKind("application/json", R"({"manifests":[]})"), ManifestKind::kIndex);
  EXPECT_EQ(*DetectManifestKind("", R"({"config":{}})"), ManifestKind::kManifest);
  EXPECT_EQ(DetectManifestKind("", R"({"schemaVersion":1})").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ImageConfig, LabelsAndPlatform) {
  auto c = ParseImageConfig(
      R"({"architecture":"arm64","variant":"v8","os":"linux","config":{"Labels":{"a":"1","b":"2"}}})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->labels.size(), 2u);
  EXPECT_EQ(c->platform.String(), "linux/arm64/v8");
  auto n = ParseImageConfig(R"({"config":{"Labels":null}})");
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->labels.empty());
}

TEST(Index, SerialiseKeepsPlatforms) {
  Index idx;
  idx.media_type = std::string(media::kOciIndex);
  Descriptor d;
  d.media_type = std::string(media::kOciManifest);
  d.digest = kD1;
  d.size = 3;
  d.platform = Platform{"linux", "arm64", "v8", ""};
  idx.manifests.push_back(d);
  auto back = ParseIndex(SerializeIndex(idx));
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(back->manifests[0].platform.has_value());
  EXPECT_EQ(back->manifests[0].platform->String(), "linux/arm64/v8");
}

TEST(Digest, Sha256) {
  EXPECT_EQ(Sha256Digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  auto d = Digester::Create("sha512");
  ASSERT_TRUE(d.ok());
  d->Update("abc");
  EXPECT_EQ(d->Finish().substr(0, 19), "sha512:ddaf35a19361");
}

}  // namespace
}  // namespace regd
