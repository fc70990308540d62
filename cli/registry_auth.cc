#include "cli/registry_auth.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/local_files.h"
#include "core/reference/reference.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace regdctl {
namespace {

constexpr int64_t kMaxDockerConfig = 4 << 20;

// A docker config key ("https://index.docker.io/v1/", "host:5000") as a registry name.
std::string RegistryOfKey(absl::string_view key) {
  absl::ConsumePrefix(&key, "https://");
  absl::ConsumePrefix(&key, "http://");
  key = key.substr(0, key.find('/'));
  std::string name = absl::AsciiStrToLower(key);
  if (name == "index.docker.io" || name == "registry-1.docker.io") name = "docker.io";
  return name;
}

std::string StringMember(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

absl::StatusOr<RegistryLogin> LoginFromEntry(const rapidjson::Value& entry, const std::string& path,
                                             absl::string_view registry) {
  RegistryLogin login;
  std::string auth = StringMember(entry, "auth");
  if (!auth.empty()) {
    std::string decoded;
    size_t colon = std::string::npos;
    if (absl::Base64Unescape(auth, &decoded)) colon = decoded.find(':');
    if (colon == std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": the \"auth\" of ", registry, " is not base64 of user:password"));
    }
    login.username = decoded.substr(0, colon);
    login.password = decoded.substr(colon + 1);
  } else {
    login.username = StringMember(entry, "username");
    login.password = StringMember(entry, "password");
  }
  login.identity_token = StringMember(entry, "identitytoken");
  if (login.password.empty() && login.identity_token.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": the auths entry of ", registry, " holds no credentials"));
  }
  return login;
}

// Why there is no usable entry: a helper is configured (which regdctl does not run), or nothing.
absl::Status NoEntry(const rapidjson::Document& doc, const std::string& path,
                     absl::string_view registry) {
  auto helpers = doc.FindMember("credHelpers");
  bool helper = helpers != doc.MemberEnd() && helpers->value.IsObject() &&
                helpers->value.HasMember(std::string(registry).c_str());
  helper = helper || !StringMember(doc, "credsStore").empty();
  return absl::FailedPreconditionError(absl::StrCat(
      path, " has no \"auths\" entry for ", registry,
      helper
          ? " (credential helpers are not run by regdctl: use --registry-user/--registry-password)"
          : ""));
}

}  // namespace

std::string RegistryOfReference(absl::string_view ref) {
  absl::StatusOr<regd::Reference> r = regd::ParseReference(ref);
  return r.ok() ? r->repo.registry : "";
}

std::string RegistryOfRepository(absl::string_view repo) {
  absl::StatusOr<regd::Repository> r = regd::ParseRepository(repo);
  return r.ok() ? r->registry : "";
}

std::string DockerConfigPath() {
  const char* dir = std::getenv("DOCKER_CONFIG");
  if (dir != nullptr && *dir != '\0') return absl::StrCat(dir, "/config.json");
  const char* home = std::getenv("HOME");
  std::string home_dir = home != nullptr ? home : "";
  if (home_dir.empty()) {
    struct passwd* pw = getpwuid(getuid());
    if (pw != nullptr && pw->pw_dir != nullptr) home_dir = pw->pw_dir;
  }
  return absl::StrCat(home_dir, "/.docker/config.json");
}

absl::StatusOr<RegistryLogin> LoginFromDockerConfig(const std::string& path,
                                                    absl::string_view registry) {
  if (registry.empty()) {
    return absl::InvalidArgumentError("no registry to look up in the docker config");
  }
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxDockerConfig);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--registry-auth-from-docker-config: ", text.status().message()));
  }
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text->data(), text->size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a JSON object"));
  }
  std::string want = absl::AsciiStrToLower(registry);
  auto auths = doc.FindMember("auths");
  if (auths != doc.MemberEnd() && auths->value.IsObject()) {
    for (auto it = auths->value.MemberBegin(); it != auths->value.MemberEnd(); ++it) {
      absl::string_view key(it->name.GetString(), it->name.GetStringLength());
      if (RegistryOfKey(key) != want || !it->value.IsObject()) continue;
      return LoginFromEntry(it->value, path, registry);
    }
  }
  return NoEntry(doc, path, registry);
}

std::string RegistryAuthValue(const RegistryLogin& login, absl::string_view registry) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto field = [&w](const char* name, absl::string_view value) {
    w.Key(name);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  if (!login.username.empty()) field("username", login.username);
  if (!login.password.empty()) field("password", login.password);
  if (!login.identity_token.empty()) field("identitytoken", login.identity_token);
  if (!registry.empty()) field("serveraddress", registry);
  w.EndObject();
  return absl::WebSafeBase64Escape(absl::string_view(buf.GetString(), buf.GetSize()));
}

}  // namespace regdctl
