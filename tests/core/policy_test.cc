#include "core/policy.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/digest.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

// The hex SHA-256 of `token`, as an operator computes it with sha256sum.
std::string TokenHash(absl::string_view token) { return Sha256Digest(token).substr(7); }

const std::string kTokenB = "s3cret-token-of-team-b";

// Team A by client certificate CN, team B by bearer token, team C by URI SAN.
std::string ValidPolicy() {
  return absl::StrCat(R"({"tenants": [
    {"name": "team-a", "client_cert_cn": "team-a.clients.example.com",
     "allow": [{"prefix": "reg.example.com/team-a", "actions": ["pull", "push"]},
               {"prefix": "docker.io/library/", "actions": ["pull"]}],
     "max_concurrent_calls": 32},
    {"name": "team-b", "token_sha256": ")",
                      absl::AsciiStrToUpper(TokenHash(kTokenB)), R"(",
     "allow": [{"prefix": "Reg.Example.COM:5000/team-b/", "actions": ["pull"]}]},
    {"name": "ci.runner_1", "client_cert_uri_san": "spiffe://example.com/ci",
     "allow": [{"prefix": "ghcr.example.com", "actions": ["push", "pull"]},
               {"prefix": "index.docker.io/ci/", "actions": ["push"]}]}
  ]})");
}

std::unique_ptr<Policy> MustParse(const std::string& json) {
  absl::StatusOr<std::unique_ptr<Policy>> p = Policy::Parse(json);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

Repository Repo(absl::string_view name) {
  absl::StatusOr<Repository> r = ParseRepository(name);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : Repository{};
}

// A one-tenant policy whose tenant has `tenant_body` after its name.
std::string OneTenant(absl::string_view tenant_body) {
  return absl::StrCat(R"({"tenants": [{"name": "t1", )", tenant_body, "}]}");
}

// One tenant with one rule of the given prefix.
std::string WithPrefix(absl::string_view prefix) {
  return OneTenant(absl::StrCat(R"("client_cert_cn": "c", "allow": [{"prefix": ")", prefix,
                                R"(", "actions": ["pull"]}])"));
}

// The parse error of `json`, which must be INVALID_ARGUMENT.
std::string ErrorOf(const std::string& json) {
  absl::StatusOr<std::unique_ptr<Policy>> p = Policy::Parse(json);
  EXPECT_FALSE(p.ok()) << json;
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
  return std::string(p.status().message());
}

TEST(PolicyParse, ValidPolicyWithAllThreeIdentityKinds) {
  std::unique_ptr<Policy> p = MustParse(ValidPolicy());
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->tenants().size(), 3u);
  const Tenant& a = p->tenants()[0];
  EXPECT_EQ(a.name, "team-a");
  EXPECT_EQ(a.client_cert_cn, "team-a.clients.example.com");
  EXPECT_TRUE(a.client_cert_uri_san.empty());
  EXPECT_TRUE(a.token_sha256.empty());
  EXPECT_EQ(a.max_concurrent_calls, 32);
  ASSERT_EQ(a.allow.size(), 2u);
  EXPECT_EQ(a.allow[0].prefix, "reg.example.com/team-a/");
  EXPECT_TRUE(a.allow[0].pull);
  EXPECT_TRUE(a.allow[0].push);
  EXPECT_EQ(a.allow[1].prefix, "docker.io/library/");
  EXPECT_TRUE(a.allow[1].pull);
  EXPECT_FALSE(a.allow[1].push);

  const Tenant& b = p->tenants()[1];
  EXPECT_EQ(b.token_sha256, TokenHash(kTokenB));  // stored lower-case
  EXPECT_EQ(b.max_concurrent_calls, 0);
  ASSERT_EQ(b.allow.size(), 1u);
  EXPECT_EQ(b.allow[0].prefix, "reg.example.com:5000/team-b/");

  const Tenant& c = p->tenants()[2];
  EXPECT_EQ(c.client_cert_uri_san, "spiffe://example.com/ci");
  ASSERT_EQ(c.allow.size(), 2u);
  EXPECT_EQ(c.allow[0].prefix, "ghcr.example.com/");
  EXPECT_EQ(c.allow[1].prefix, "docker.io/ci/");
}

TEST(PolicyParse, AllowedPathsAreTheTenantsOwn) {
  std::unique_ptr<Policy> p = MustParse(
      R"({"tenants": [{"name": "a", "token_sha256": ")" + TokenHash("t") +
      R"(", "allow": [{"prefix": "reg.example.com/a/", "actions": ["push"]}],
           "allowed_paths": ["/shared/a", "/data/a"]}]})");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->tenants()[0].allowed_paths, (std::vector<std::string>{"/shared/a", "/data/a"}));
  std::unique_ptr<Policy> none = MustParse(ValidPolicy());
  EXPECT_TRUE(none->tenants()[0].allowed_paths.empty()) << "absent: no file sources";
  for (const char* bad : {R"("allowed_paths": "/x")", R"("allowed_paths": ["relative"])",
                          R"("allowed_paths": [""])", R"("allowed_paths": [1])"}) {
    std::string msg =
        ErrorOf(R"({"tenants": [{"name": "a", "token_sha256": ")" + TokenHash("t") +
                R"(", "allow": [{"prefix": "reg.example.com/a/", "actions": ["push"]}], )" +
                bad + "}]}");
    EXPECT_NE(msg.find("allowed_paths"), std::string::npos) << bad << ": " << msg;
  }
}

TEST(PolicyParse, DockerConfigMustBeReadableJsonObject) {
  char tmpl[] = "/tmp/regd-policy-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string good = dir + "/good.json";
  const std::string bad = dir + "/bad.json";
  std::ofstream(good) << R"({"auths": {}})";
  std::ofstream(bad) << "[1, 2]";
  const std::string rule =
      R"("client_cert_cn": "c", "allow": [{"prefix": "r.io", "actions": ["pull"]}])";

  std::unique_ptr<Policy> p =
      MustParse(OneTenant(absl::StrCat(rule, R"(, "docker_config": ")", good, "\"")));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->tenants()[0].docker_config, good);

  std::string msg =
      ErrorOf(OneTenant(absl::StrCat(rule, R"(, "docker_config": ")", dir, "/missing.json\"")));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").docker_config")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "missing.json")) << msg;
  msg = ErrorOf(OneTenant(absl::StrCat(rule, R"(, "docker_config": ")", bad, "\"")));
  EXPECT_TRUE(absl::StrContains(msg, "not a JSON object")) << msg;
  msg = ErrorOf(OneTenant(absl::StrCat(rule, R"(, "docker_config": "relative.json")")));
  EXPECT_TRUE(absl::StrContains(msg, "absolute")) << msg;
  msg = ErrorOf(OneTenant(absl::StrCat(rule, R"(, "docker_config": ")", dir, "\"")));
  EXPECT_TRUE(absl::StrContains(msg, "docker_config")) << msg;  // a directory
  unlink(good.c_str());
  unlink(bad.c_str());
  rmdir(dir.c_str());
}

TEST(PolicyParse, LoadReadsTheFile) {
  char tmpl[] = "/tmp/regd-policy-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/policy.json";
  std::ofstream(path) << ValidPolicy();
  absl::StatusOr<std::unique_ptr<Policy>> p = Policy::Load(path);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->tenants().size(), 3u);
  EXPECT_TRUE(absl::IsNotFound(Policy::Load(path + ".missing").status()));
  unlink(path.c_str());
  rmdir(tmpl);
}

TEST(PolicyParse, TopLevelErrors) {
  EXPECT_TRUE(absl::StrContains(ErrorOf("[]"), "top level"));
  EXPECT_TRUE(absl::StrContains(ErrorOf("{}"), "tenants"));
  EXPECT_TRUE(absl::StrContains(ErrorOf(R"({"tenants": []})"), "at least one"));
  EXPECT_TRUE(absl::StrContains(ErrorOf(R"({"tenants": {}})"), "array"));
  std::string msg = ErrorOf(R"({"tenantz": []})");
  EXPECT_TRUE(absl::StrContains(msg, "unknown key \"tenantz\"")) << msg;
  EXPECT_FALSE(Policy::Parse("{not json").ok());
  EXPECT_FALSE(Policy::Parse(std::string(100, '[')).ok());
}

TEST(PolicyParse, TooManyTenants) {
  std::string json = R"({"tenants": [)";
  for (int i = 0; i < 1025; ++i) {
    absl::StrAppend(&json, i ? "," : "", R"({"name": "t)", i, R"(", "client_cert_cn": "c)", i,
                    R"(", "allow": [{"prefix": "r.io", "actions": ["pull"]}]})");
  }
  json += "]}";
  EXPECT_TRUE(absl::StrContains(ErrorOf(json), "more than 1024")) << ErrorOf(json);
}

TEST(PolicyParse, UnknownKeysNameTenantAndKey) {
  std::string msg = ErrorOf(OneTenant(
      R"("client_cert_cn": "c", "alow": [], "allow": [{"prefix": "r.io", "actions": ["pull"]}])"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\")")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "unknown key \"alow\"")) << msg;
  msg = ErrorOf(OneTenant(
      R"("client_cert_cn": "c", "allow": [{"prefix": "r.io", "actions": ["pull"], "push": true}])"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").allow[0]")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "unknown key \"push\"")) << msg;
  // The same key twice is refused too (RapidJSON keeps both).
  msg = ErrorOf(OneTenant(
      R"("client_cert_cn": "c", "client_cert_cn": "d", "allow": [{"prefix": "r.io", "actions": ["pull"]}])"));
  EXPECT_TRUE(absl::StrContains(msg, "client_cert_cn")) << msg;
}

TEST(PolicyParse, WrongTypesAndRanges) {
  const std::string rule = R"("allow": [{"prefix": "r.io", "actions": ["pull"]}])";
  std::string msg = ErrorOf(OneTenant(absl::StrCat(R"("client_cert_cn": 7, )", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").client_cert_cn")) << msg;
  msg = ErrorOf(OneTenant(absl::StrCat(R"("client_cert_cn": "", )", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "empty")) << msg;
  msg = ErrorOf(
      OneTenant(absl::StrCat(R"("client_cert_cn": "c", "max_concurrent_calls": 0, )", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "max_concurrent_calls")) << msg;
  EXPECT_FALSE(
      Policy::Parse(OneTenant(absl::StrCat(
                        R"("client_cert_cn": "c", "max_concurrent_calls": 100001, )", rule)))
          .ok());
  EXPECT_FALSE(Policy::Parse(OneTenant(absl::StrCat(
                                 R"("client_cert_cn": "c", "max_concurrent_calls": 2.5, )", rule)))
                   .ok());
  EXPECT_FALSE(Policy::Parse(OneTenant(absl::StrCat(
                                 R"("client_cert_cn": "c", "max_concurrent_calls": "4", )", rule)))
                   .ok());
  EXPECT_TRUE(
      Policy::Parse(OneTenant(absl::StrCat(
                        R"("client_cert_cn": "c", "max_concurrent_calls": 100000, )", rule)))
          .ok());
  msg = ErrorOf(OneTenant(R"("client_cert_cn": "c", "allow": [])"));
  EXPECT_TRUE(absl::StrContains(msg, "allow")) << msg;
  msg = ErrorOf(OneTenant(R"("client_cert_cn": "c")"));
  EXPECT_TRUE(absl::StrContains(msg, "allow")) << msg;
  msg = ErrorOf(OneTenant(R"("client_cert_cn": "c", "allow": {})"));
  EXPECT_TRUE(absl::StrContains(msg, "allow")) << msg;
  msg = ErrorOf(
      OneTenant(absl::StrCat(R"("client_cert_cn": ")", std::string(5000, 'c'), "\", ", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "longer than")) << msg;
}

TEST(PolicyParse, NameRules) {
  const std::string body =
      R"("client_cert_cn": "c", "allow": [{"prefix": "r.io", "actions": ["pull"]}])";
  std::string msg = ErrorOf(absl::StrCat(R"({"tenants": [{)", body, "}]}"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0]")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "name")) << msg;
  EXPECT_FALSE(Policy::Parse(absl::StrCat(R"({"tenants": [{"name": "", )", body, "}]}")).ok());
  EXPECT_FALSE(
      Policy::Parse(absl::StrCat(R"({"tenants": [{"name": "team a", )", body, "}]}")).ok());
  EXPECT_FALSE(Policy::Parse(absl::StrCat(R"({"tenants": [{"name": "a/b", )", body, "}]}")).ok());
  EXPECT_FALSE(Policy::Parse(absl::StrCat(R"({"tenants": [{"name": ")", std::string(65, 'n'),
                                          "\", ", body, "}]}"))
                   .ok());
  EXPECT_TRUE(Policy::Parse(absl::StrCat(R"({"tenants": [{"name": ")", std::string(64, 'n'), "\", ",
                                         body, "}]}"))
                  .ok());
  EXPECT_FALSE(Policy::Parse(absl::StrCat(R"({"tenants": [{"name": 1, )", body, "}]}")).ok());
}

TEST(PolicyParse, ExactlyOneIdentity) {
  const std::string rule = R"("allow": [{"prefix": "r.io", "actions": ["pull"]}])";
  std::string msg = ErrorOf(OneTenant(rule));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\")")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "exactly one")) << msg;
  msg = ErrorOf(OneTenant(
      absl::StrCat(R"("client_cert_cn": "c", "client_cert_uri_san": "spiffe://x/y", )", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "exactly one")) << msg;
  const std::string hash = TokenHash("tok");
  msg = ErrorOf(
      OneTenant(absl::StrCat(R"("client_cert_cn": "c", "token_sha256": ")", hash, "\", ", rule)));
  EXPECT_TRUE(absl::StrContains(msg, "exactly one")) << msg;
  EXPECT_FALSE(absl::StrContains(msg, hash)) << msg;
}

TEST(PolicyParse, BadTokenHashIsRefusedWithoutEchoingIt) {
  const std::string rule = R"("allow": [{"prefix": "r.io", "actions": ["pull"]}])";
  // A raw token pasted in place of its hash; too short; non-hex; too long.
  for (const std::string& value : {std::string("my-plain-secret-token"), TokenHash("t").substr(1),
                                   "z" + TokenHash("t").substr(1), TokenHash("t") + "0"}) {
    std::string msg = ErrorOf(OneTenant(absl::StrCat(R"("token_sha256": ")", value, "\", ", rule)));
    EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").token_sha256")) << msg;
    EXPECT_TRUE(absl::StrContains(msg, "64 hex")) << msg;
    EXPECT_FALSE(absl::StrContains(msg, value)) << msg;
  }
  EXPECT_FALSE(Policy::Parse(OneTenant(absl::StrCat(R"("token_sha256": 5, )", rule))).ok());
}

TEST(PolicyParse, DuplicateNamesAndIdentities) {
  auto two = [](absl::string_view first, absl::string_view second) {
    const std::string rule = R"("allow": [{"prefix": "r.io", "actions": ["pull"]}])";
    return absl::StrCat(R"({"tenants": [{)", first, ", ", rule, "}, {", second, ", ", rule, "}]}");
  };
  std::string msg = ErrorOf(
      two(R"("name": "a", "client_cert_cn": "x")", R"("name": "a", "client_cert_cn": "y")"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[1] (\"a\")")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"a\")")) << msg;

  msg = ErrorOf(
      two(R"("name": "a", "client_cert_cn": "x")", R"("name": "b", "client_cert_cn": "x")"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[1] (\"b\").client_cert_cn")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"a\")")) << msg;

  msg = ErrorOf(two(R"("name": "a", "client_cert_uri_san": "spiffe://x/y")",
                    R"("name": "b", "client_cert_uri_san": "spiffe://x/y")"));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[1] (\"b\").client_cert_uri_san")) << msg;

  // The same token hash, once upper-case: still the same token.
  const std::string hash = TokenHash("shared-token");
  msg = ErrorOf(
      two(absl::StrCat(R"("name": "a", "token_sha256": ")", hash, "\""),
          absl::StrCat(R"("name": "b", "token_sha256": ")", absl::AsciiStrToUpper(hash), "\"")));
  EXPECT_TRUE(absl::StrContains(msg, "tenants[1] (\"b\").token_sha256")) << msg;
  EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"a\")")) << msg;
  EXPECT_FALSE(absl::StrContains(msg, hash)) << msg;
  EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(msg), hash)) << msg;

  // A CN in one tenant and the same text as a URI SAN in another is fine.
  EXPECT_TRUE(Policy::Parse(two(R"("name": "a", "client_cert_cn": "x:y")",
                                R"("name": "b", "client_cert_uri_san": "x:y")"))
                  .ok());
}

TEST(PolicyParse, BadPrefixes) {
  for (const char* prefix : {
           "",                                 // empty
           "reg.example.com/team a/",          // whitespace
           "reg.example.com/team\\ta/",        // control byte (JSON \t)
           "reg.example.com//team-a/",         // empty segment
           "reg.example.com/team-a//",         // empty segment at the end
           "/team-a/",                         // no registry
           "reg.example.com/./team-a/",        // "."
           "reg.example.com/team-a/../b/",     // ".."
           "reg.example.com/team-*",           // glob
           "reg.example.com/team-?/",          // glob
           "*.example.com/",                   // glob in the host
           "https://reg.example.com/team-a/",  // scheme
           "team-a/app",                       // not a registry
           "library/",                         // not a registry
           "alpine",                           // not a registry
           "reg.example.com/Team-A/",          // repository paths are lower-case
           "reg.example.com/team-a:latest",    // a tag
           "reg.example.com:99999/",           // bad port
           "reg_example.com/",                 // bad host
       }) {
    std::string msg = ErrorOf(WithPrefix(prefix));
    EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").allow[0].prefix"))
        << prefix << ": " << msg;
  }
  // The specific refusals say what is wrong.
  const std::pair<const char*, const char*> reasons[] = {
      {"https://reg.example.com/a/", "scheme"},
      {"reg.example.com/team-*", "glob"},
      {"reg.example.com//a/", "empty path segment"},
      {"reg.example.com/a/../b", "\"..\""},
      {"reg.example.com/a b", "whitespace"},
      {"alpine/", "registry host"},
      {"reg.example.com:99999/", "port"},
  };
  for (const auto& [prefix, reason] : reasons) {
    std::string msg = ErrorOf(WithPrefix(prefix));
    EXPECT_TRUE(absl::StrContains(msg, reason)) << prefix << ": " << msg;
  }
  EXPECT_FALSE(
      Policy::Parse(
          OneTenant(R"("client_cert_cn": "c", "allow": [{"prefix": 1, "actions": ["pull"]}])"))
          .ok());
  EXPECT_FALSE(
      Policy::Parse(OneTenant(R"("client_cert_cn": "c", "allow": [{"actions": ["pull"]}])")).ok());
}

TEST(PolicyParse, PrefixNormalisation) {
  const std::pair<const char*, const char*> cases[] = {
      {"reg.example.com", "reg.example.com/"},
      {"reg.example.com/", "reg.example.com/"},
      {"REG.Example.com/team-a", "reg.example.com/team-a/"},
      {"reg.example.com:5000/team-a/app/", "reg.example.com:5000/team-a/app/"},
      {"localhost/x", "localhost/x/"},
      {"localhost:5000", "localhost:5000/"},
      {"docker.io/library", "docker.io/library/"},
      {"index.docker.io/library/", "docker.io/library/"},
      {"Registry-1.Docker.io/team/", "docker.io/team/"},
      {"[::1]:5000/x", "[::1]:5000/x/"},
  };
  for (const auto& [in, want] : cases) {
    std::unique_ptr<Policy> p = MustParse(WithPrefix(in));
    ASSERT_NE(p, nullptr) << in;
    EXPECT_EQ(p->tenants()[0].allow[0].prefix, want) << in;
  }
}

TEST(PolicyParse, BadActions) {
  for (const char* actions :
       {R"([])", R"(["pull", "delete"])", R"(["PULL"])", R"("pull")", R"([1])", R"(null)"}) {
    std::string msg = ErrorOf(OneTenant(absl::StrCat(
        R"("client_cert_cn": "c", "allow": [{"prefix": "r.io", "actions": )", actions, "}]")));
    EXPECT_TRUE(absl::StrContains(msg, "tenants[0] (\"t1\").allow[0].actions"))
        << actions << ": " << msg;
  }
}

class PolicyCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = MustParse(ValidPolicy());
    ASSERT_NE(policy_, nullptr);
  }
  absl::Status Check(int tenant, absl::string_view repo, Action action) {
    return policy_->Check(policy_->tenants()[tenant], Repo(repo), action);
  }
  std::unique_ptr<Policy> policy_;
};

TEST_F(PolicyCheck, MatchesWholeSegmentsOnly) {
  EXPECT_TRUE(Check(0, "reg.example.com/team-a/app", Action::kPush).ok());
  EXPECT_TRUE(Check(0, "reg.example.com/team-a/deep/er/app", Action::kPull).ok());
  absl::Status st = Check(0, "reg.example.com/team-ab/app", Action::kPush);
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "reg.example.com/team-ab", Action::kPull)));
  // The prefix "team-a/" covers repositories beneath it and team-a itself.
  EXPECT_TRUE(Check(0, "reg.example.com/team-a", Action::kPull).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "reg.example.com/team-b/app", Action::kPull)));
  // Another registry, or the same host with a port, is another registry.
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "reg.example.com:443/team-a/app", Action::kPull)));
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "reg.example.co/team-a/app", Action::kPull)));
}

TEST_F(PolicyCheck, MessageNamesTenantActionAndRepository) {
  absl::Status st = Check(0, "reg.example.com/team-b/app", Action::kPush);
  ASSERT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_EQ(st.message(), "tenant \"team-a\" may not push to reg.example.com/team-b/app");
  st = Check(1, "reg.example.com:5000/team-a/app", Action::kPull);
  ASSERT_TRUE(absl::IsPermissionDenied(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "tenant \"team-b\" may not pull")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "reg.example.com:5000/team-a/app")) << st;
  EXPECT_FALSE(absl::StrContains(st.message(), TokenHash(kTokenB))) << st;
}

TEST_F(PolicyCheck, WholeRegistryPrefix) {
  EXPECT_TRUE(Check(2, "ghcr.example.com/anything/at/all", Action::kPush).ok());
  EXPECT_TRUE(Check(2, "ghcr.example.com/x", Action::kPull).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Check(2, "ghcr.example.com.evil.io/x", Action::kPull)));
  EXPECT_TRUE(absl::IsPermissionDenied(Check(2, "ghcr.example.com:5000/x", Action::kPull)));
}

TEST_F(PolicyCheck, RegistryIsCaseInsensitive) {
  // Written "Reg.Example.COM:5000/team-b/" in the policy.
  EXPECT_TRUE(Check(1, "reg.example.com:5000/team-b/app", Action::kPull).ok());
  EXPECT_TRUE(Check(1, "REG.EXAMPLE.com:5000/team-b/app", Action::kPull).ok());
  Repository upper{"REG.example.COM", "team-a/app"};
  EXPECT_TRUE(policy_->Check(policy_->tenants()[0], upper, Action::kPush).ok());
}

TEST_F(PolicyCheck, RegistryWithPort) {
  EXPECT_TRUE(Check(1, "reg.example.com:5000/team-b/app", Action::kPull).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Check(1, "reg.example.com/team-b/app", Action::kPull)));
  EXPECT_TRUE(absl::IsPermissionDenied(Check(1, "reg.example.com:5001/team-b/app", Action::kPull)));
}

TEST_F(PolicyCheck, DockerHubAliases) {
  // "docker.io/library/" in the policy; "alpine" is docker.io/library/alpine.
  EXPECT_TRUE(Check(0, "alpine", Action::kPull).ok());
  EXPECT_TRUE(Check(0, "index.docker.io/library/alpine", Action::kPull).ok());
  EXPECT_TRUE(Check(0, "registry-1.docker.io/library/busybox", Action::kPull).ok());
  Repository odd_case{"Index.Docker.IO", "library/alpine"};
  EXPECT_TRUE(policy_->Check(policy_->tenants()[0], odd_case, Action::kPull).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "someone/alpine", Action::kPull)));
  // "index.docker.io/ci/" in the policy.
  EXPECT_TRUE(Check(2, "docker.io/ci/app", Action::kPush).ok());
  EXPECT_TRUE(Check(2, "ci/app", Action::kPush).ok());
}

TEST_F(PolicyCheck, PullOnlyTenantIsRefusedPush) {
  EXPECT_TRUE(Check(1, "reg.example.com:5000/team-b/app", Action::kPull).ok());
  absl::Status st = Check(1, "reg.example.com:5000/team-b/app", Action::kPush);
  EXPECT_TRUE(absl::IsPermissionDenied(st)) << st;
  // Team A may pull from docker.io/library/ but not push there.
  EXPECT_TRUE(absl::IsPermissionDenied(Check(0, "alpine", Action::kPush)));
  // Team C may push to docker.io/ci/ but not pull from it.
  EXPECT_TRUE(absl::IsPermissionDenied(Check(2, "ci/app", Action::kPull)));
}

TEST(PolicyIdentify, ByCertCnUriSanAndToken) {
  std::unique_ptr<Policy> p = MustParse(ValidPolicy());
  ASSERT_NE(p, nullptr);
  CallerIdentity by_cn;
  by_cn.cert_cn = "team-a.clients.example.com";
  const Tenant* t = p->Identify(by_cn);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "team-a");

  CallerIdentity by_san;
  by_san.cert_cn = "some-other-cn";
  by_san.uri_sans = {"spiffe://example.com/other", "spiffe://example.com/ci"};
  t = p->Identify(by_san);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "ci.runner_1");

  CallerIdentity by_token;
  by_token.bearer_token = kTokenB;
  t = p->Identify(by_token);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "team-b");

  // The certificate wins over the token.
  CallerIdentity both = by_cn;
  both.bearer_token = kTokenB;
  t = p->Identify(both);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "team-a");
  // A certificate that matches no tenant still lets the token speak.
  CallerIdentity stranger_cert;
  stranger_cert.cert_cn = "stranger";
  stranger_cert.bearer_token = kTokenB;
  t = p->Identify(stranger_cert);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "team-b");
}

TEST(PolicyIdentify, UnknownOrEmptyIsNull) {
  std::unique_ptr<Policy> p = MustParse(ValidPolicy());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Identify(CallerIdentity{}), nullptr);
  CallerIdentity who;
  who.bearer_token = "not-a-known-token";
  EXPECT_EQ(p->Identify(who), nullptr);
  who.bearer_token = TokenHash(kTokenB);  // the hash itself is not the token
  EXPECT_EQ(p->Identify(who), nullptr);
  who.bearer_token = kTokenB + "x";
  EXPECT_EQ(p->Identify(who), nullptr);
  who = CallerIdentity{};
  who.cert_cn = "TEAM-A.clients.example.com";  // exact match only
  EXPECT_EQ(p->Identify(who), nullptr);
  who = CallerIdentity{};
  who.uri_sans = {"", "spiffe://example.com/ci/extra"};
  EXPECT_EQ(p->Identify(who), nullptr);
}

TEST(PolicyIdentify, EmptyCallerFieldsNeverMatchTenantsWithoutThem) {
  // Tenants without a CN or URI SAN hold "" there; an empty caller field must
  // not match them.
  std::unique_ptr<Policy> p =
      MustParse(OneTenant(R"("token_sha256": ")" + TokenHash("t") +
                          R"(", "allow": [{"prefix": "r.io", "actions": ["pull"]}])"));
  ASSERT_NE(p, nullptr);
  CallerIdentity who;
  who.uri_sans = {""};
  EXPECT_EQ(p->Identify(who), nullptr);
  who.bearer_token = "t";
  ASSERT_NE(p->Identify(who), nullptr);
}

TEST(ActionNameTest, Names) {
  EXPECT_EQ(ActionName(Action::kPull), "pull");
  EXPECT_EQ(ActionName(Action::kPush), "push");
}

}  // namespace
}  // namespace regd
