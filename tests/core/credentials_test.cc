#include "core/auth/credentials.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

class FakeClock : public Clock {
 public:
  absl::Time Now() override { return now; }
  absl::Time now = absl::FromUnixSeconds(1000);
};

HelperRunner FakeHelper(int* calls) {
  return
      [calls](const std::string& helper, const std::string& server) -> absl::StatusOr<std::string> {
        ++*calls;
        if (helper == "missing") return absl::NotFoundError("no creds");
        return std::string(R"({"ServerURL":")") + server + R"(","Username":"u-)" + helper +
               R"(","Secret":"s-)" + server + R"("})";
      };
}

TEST(DockerConfig, AuthsBase64) {
  std::string json = std::string(R"({"auths":{"reg.io:5000":{"auth":")") +
                     absl::Base64Escape("alice:pa:ss") + R"("}}})";
  int calls = 0;
  auto c = CredentialsFromDockerConfig(json, "reg.io:5000", FakeHelper(&calls));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "alice");
  EXPECT_EQ(c->password, "pa:ss");
  EXPECT_EQ(calls, 0);
}

TEST(DockerConfig, UrlKeysAndDockerHubAliases) {
  std::string json = std::string(R"({"auths":{"https://index.docker.io/v1/":{"auth":")") +
                     absl::Base64Escape("hub:pw") +
                     R"("},"https://reg.io/v2/":{"username":"x","password":"y"}}})";
  int calls = 0;
  auto hub = CredentialsFromDockerConfig(json, "docker.io", FakeHelper(&calls));
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(hub->username, "hub");
  auto reg = CredentialsFromDockerConfig(json, "reg.io", FakeHelper(&calls));
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg->username, "x");
  EXPECT_EQ(CredentialsFromDockerConfig(json, "other.io", FakeHelper(&calls)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(DockerConfig, CredHelpersBeatAuthsAndCredsStoreIsLast) {
  std::string json = R"({"auths":{"a.io":{"auth":"dTpw"}},"credHelpers":{"a.io":"ecr"},
                         "credsStore":"desktop"})";
  int calls = 0;
  auto a = CredentialsFromDockerConfig(json, "a.io", FakeHelper(&calls));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->username, "u-ecr");
  EXPECT_EQ(a->password, "s-a.io");
  auto b = CredentialsFromDockerConfig(json, "b.io", FakeHelper(&calls));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->username, "u-desktop");
  auto hub = CredentialsFromDockerConfig(json, "docker.io", FakeHelper(&calls));
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(hub->password, "s-https://index.docker.io/v1/");  // docker's server name for the hub
}

TEST(DockerConfig, IdentityTokenFromHelper) {
  HelperRunner h = [](const std::string&, const std::string&) -> absl::StatusOr<std::string> {
    return std::string(R"({"Username":"<token>","Secret":"refresh"})");
  };
  auto c = CredentialsFromDockerConfig(R"({"credsStore":"x"})", "r.io", h);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->identity_token, "refresh");
  EXPECT_TRUE(c->username.empty());
}

TEST(DockerConfig, CredsStoreWithoutEntryIsNotFound) {
  int calls = 0;
  auto c = CredentialsFromDockerConfig(R"({"credsStore":"missing"})", "r.io", FakeHelper(&calls));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
}

TEST(DockerConfig, BadJsonOrAuthIsAnErrorWithoutSecrets) {
  int calls = 0;
  EXPECT_FALSE(CredentialsFromDockerConfig("nope", "r.io", FakeHelper(&calls)).ok());
  auto bad = CredentialsFromDockerConfig(R"({"auths":{"r.io":{"auth":"!!!"}}})", "r.io",
                                         FakeHelper(&calls));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("!!!"), absl::string_view::npos);
}

TEST(CredentialsFile, Forms) {
  EXPECT_EQ(ParseCredentialsFile(R"({"username":"u","password":"p"})")->password, "p");
  EXPECT_EQ(ParseCredentialsFile(R"({"identitytoken":"t"})")->identity_token, "t");
  EXPECT_FALSE(ParseCredentialsFile(R"({})").ok());
  EXPECT_FALSE(ParseCredentialsFile("[]").ok());
}

// A real docker-credential-* program on PATH, run through the helper protocol.
TEST(CredentialHelper, RunsRealProgram) {
  char dir_tmpl[] = "/tmp/regd-helper-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  std::string dir = dir_tmpl;
  std::string prog = dir + "/docker-credential-regdtest";
  {
    std::ofstream f(prog);
    f << "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\n"
         "case \"$server\" in\n  known.io) printf "
         "'{\"ServerURL\":\"%s\",\"Username\":\"bob\",\"Secret\":\"hunter2\"}' \"$server\";;\n"
         "  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n";
  }
  chmod(prog.c_str(), 0755);
  std::string path = dir + ":" + getenv("PATH");
  setenv("PATH", path.c_str(), 1);
  auto out = RunCredentialHelper("regdtest", "known.io");
  ASSERT_TRUE(out.ok()) << out.status();
  auto c = CredentialsFromDockerConfig(R"({"credHelpers":{"known.io":"regdtest"}})", "known.io",
                                       RunCredentialHelper);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "bob");
  EXPECT_EQ(c->password, "hunter2");
  auto missing = RunCredentialHelper("regdtest", "unknown.io");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(RunCredentialHelper("does-not-exist-helper", "x").ok());
  EXPECT_FALSE(RunCredentialHelper("../evil", "x").ok());
}

TEST(CredentialStore, CachesResolutionUntilTtl) {
  char dir_tmpl[] = "/tmp/regd-dcfg-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  std::string dir = dir_tmpl;
  std::ofstream(dir + "/config.json") << R"({"credHelpers":{"r.io":"h"}})";
  int calls = 0;
  FakeClock clock;
  CredentialStore::Options o;
  o.docker_config_dir = dir;
  o.ttl = absl::Minutes(5);
  o.helper_runner = FakeHelper(&calls);
  CredentialStore store(o, &clock);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(store.Get("r.io")->username, "u-h");
  EXPECT_EQ(calls, 1);
  clock.now += absl::Minutes(6);
  ASSERT_TRUE(store.Get("r.io").ok());
  EXPECT_EQ(calls, 2);
  store.Invalidate("r.io");
  ASSERT_TRUE(store.Get("r.io").ok());
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(store.Get("none.io")->empty());
}

TEST(CredentialStore, ConfigFileCredentialsWin) {
  char dir_tmpl[] = "/tmp/regd-cf-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  std::string dir = dir_tmpl;
  std::ofstream(dir + "/creds.json") << R"({"username":"cfg","password":"pw"})";
  FakeClock clock;
  CredentialStore::Options o;
  o.docker_config_dir = dir;  // no config.json there
  o.credentials_files["r.io"] = dir + "/creds.json";
  CredentialStore store(o, &clock);
  EXPECT_EQ(store.Get("r.io")->username, "cfg");
  EXPECT_TRUE(store.Get("other.io")->empty());
}

}  // namespace
}  // namespace regd
