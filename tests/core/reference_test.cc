#include "core/reference/reference.h"

#include <string>

#include "gtest/gtest.h"

namespace regd {
namespace {

struct ValidCase {
  const char* input;
  const char* registry;
  const char* path;
  const char* tag;
  const char* digest;
};

constexpr char kD[] = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

class ValidReference : public ::testing::TestWithParam<ValidCase> {};

TEST_P(ValidReference, Parses) {
  const ValidCase& c = GetParam();
  absl::StatusOr<Reference> r = ParseReference(c.input);
  ASSERT_TRUE(r.ok()) << c.input << ": " << r.status();
  EXPECT_EQ(r->repo.registry, c.registry) << c.input;
  EXPECT_EQ(r->repo.path, c.path) << c.input;
  EXPECT_EQ(r->tag, c.tag) << c.input;
  EXPECT_EQ(r->digest, c.digest) << c.input;
}

const std::string kWithDigest = std::string("alpine@") + kD;
const std::string kTagDigest = std::string("localhost:5000/a/b:v1@") + kD;
const std::string kHostDigest = std::string("ghcr.io/o/r@") + kD;

INSTANTIATE_TEST_SUITE_P(
    Table, ValidReference,
    ::testing::Values(
        ValidCase{"alpine", "docker.io", "library/alpine", "latest", ""},
        ValidCase{"alpine:3.19", "docker.io", "library/alpine", "3.19", ""},
        ValidCase{"library/alpine", "docker.io", "library/alpine", "latest", ""},
        ValidCase{"docker.io/alpine", "docker.io", "library/alpine", "latest", ""},
        ValidCase{"docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", ""},
        ValidCase{"index.docker.io/alpine", "docker.io", "library/alpine", "latest", ""},
        ValidCase{"registry-1.docker.io/foo/bar", "docker.io", "foo/bar", "latest", ""},
        ValidCase{"user/repo", "docker.io", "user/repo", "latest", ""},
        ValidCase{"user/repo:tag", "docker.io", "user/repo", "tag", ""},
        ValidCase{"localhost/app", "localhost", "app", "latest", ""},
        ValidCase{"localhost:5000/app", "localhost:5000", "app", "latest", ""},
        ValidCase{"localhost:5000/app:1.0", "localhost:5000", "app", "1.0", ""},
        ValidCase{"127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", ""},
        ValidCase{"ghcr.io/owner/repo:v1.2.3", "ghcr.io", "owner/repo", "v1.2.3", ""},
        ValidCase{"my-registry.example.com/team/app", "my-registry.example.com", "team/app",
                  "latest", ""},
        ValidCase{"Registry.Example.com/a", "registry.example.com", "a", "latest", ""},
        ValidCase{"a.b/c/d/e/f/g", "a.b", "c/d/e/f/g", "latest", ""},
        ValidCase{"repo_name/with__double", "docker.io", "repo_name/with__double", "latest", ""},
        ValidCase{"a/b-c---d", "docker.io", "a/b-c---d", "latest", ""},
        ValidCase{"a/b.c", "docker.io", "a/b.c", "latest", ""},
        ValidCase{"x:_tag", "docker.io", "library/x", "_tag", ""},
        ValidCase{"x:TAG.with-dash_1", "docker.io", "library/x", "TAG.with-dash_1", ""},
        ValidCase{kWithDigest.c_str(), "docker.io", "library/alpine", "", kD},
        ValidCase{kTagDigest.c_str(), "localhost:5000", "a/b", "v1", kD},
        ValidCase{kHostDigest.c_str(), "ghcr.io", "o/r", "", kD},
        ValidCase{"[::1]:5000/app", "[::1]:5000", "app", "latest", ""},
        ValidCase{"host:443/p", "host:443", "p", "latest", ""},
        // Upper case in the first component makes it a registry, as in docker.
        ValidCase{"UPPER/case", "UPPER", "case", "latest", ""}));

class InvalidReference : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidReference, IsInvalidArgument) {
  absl::StatusOr<Reference> r = ParseReference(GetParam());
  ASSERT_FALSE(r.ok()) << GetParam() << " parsed as " << r->String();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << GetParam();
  EXPECT_NE(r.status().message().find("invalid image reference"), absl::string_view::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidReference,
    ::testing::Values(
        "", "upper/CASE", "a:b:c", "repo@sha256:short", "host:port/", "-bad", "a//b", "a/", "/a",
        "alpine:", "alpine:-tag", "alpine:.tag", "alpine@", "alpine@md5:abcd", "alpine@sha256:XYZ",
        "alpine@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "alpine bad", "a/b_", "a/_b", "a/b..c", "a/b___c", "localhost:abc/x", "localhost:123456/x",
        "127.0.0.1:99999/x", "host:0/x", "-host.io/x", "host-.io/x", "a/b:tag with space",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "x:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "[::1/app", "a\tb", "@sha256:abc"));

TEST(Reference, StringRoundTrip) {
  auto r = ParseReference("localhost:5000/a/b:v1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->String(), "localhost:5000/a/b:v1");
  EXPECT_EQ(r->Identifier(), "v1");
  EXPECT_EQ(r->repo.ApiHost(), "localhost:5000");
  auto d = ParseReference("alpine");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->repo.ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(d->String(), "docker.io/library/alpine:latest");
}

TEST(Reference, DigestWinsAsIdentifier) {
  auto r = ParseReference(std::string("a/b:t@") + kD);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Identifier(), kD);
}

TEST(Repository, ParsesNamesWithoutTag) {
  auto r = ParseRepository("alpine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->String(), "docker.io/library/alpine");
  EXPECT_FALSE(ParseRepository("alpine:3").ok());
  EXPECT_FALSE(ParseRepository(std::string("alpine@") + kD).ok());
  EXPECT_FALSE(ParseRepository("").ok());
  auto h = ParseRepository("localhost:5000/x/y");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->registry, "localhost:5000");
  EXPECT_EQ(h->path, "x/y");
}

TEST(Digest, Validation) {
  EXPECT_TRUE(ValidateDigest(kD).ok());
  EXPECT_TRUE(ValidateDigest(std::string("sha512:") + std::string(128, 'a')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:abc").ok());
  EXPECT_FALSE(ValidateDigest("sha512:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(ValidateDigest("nocolon").ok());
  EXPECT_FALSE(ValidateDigest("md5:d41d8cd98f00b204e9800998ecf8427e").ok());
}

TEST(Reference, RegistryHostIsCaseInsensitive) {
  // One spelling of a host, so that settings, slots, credentials and the
  // tenant policy all agree on it.
  absl::StatusOr<Reference> r = ParseReference("REG.Example.com:5000/team/app:v1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->repo.registry, "reg.example.com:5000");
  r = ParseReference("INDEX.DOCKER.IO/alpine");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->repo.registry, "docker.io");
  EXPECT_EQ(r->repo.path, "library/alpine");
}

}  // namespace
}  // namespace regd
