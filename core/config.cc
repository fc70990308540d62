#include "core/config.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "core/json.h"
#include "core/status_macros.h"
#include "rapidjson/document.h"

namespace regd {
namespace {

absl::Status Bad(absl::string_view where, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config: ", where, ": ", why));
}

[[nodiscard]] absl::Status CheckReadable(absl::string_view where, const std::string& path) {
  if (path.empty()) return Bad(where, "must not be empty");
  if (access(path.c_str(), R_OK) != 0) {
    return Bad(where, absl::StrCat("cannot read \"", path, "\""));
  }
  return absl::OkStatus();
}

[[nodiscard]] absl::StatusOr<RegistryConfig> ParseRegistry(const std::string& name,
                                                           const rapidjson::Value& v) {
  if (!v.IsObject()) return Bad(name, "must be an object");
  RegistryConfig rc;
  for (auto& m : v.GetObject()) {
    std::string key = m.name.GetString();
    std::string where = absl::StrCat("registries.\"", name, "\".", key);
    const rapidjson::Value& val = m.value;
    if (key == "plain_http") {
      if (!val.IsBool()) return Bad(where, "must be true or false");
      rc.plain_http = val.GetBool();
    } else if (key == "ca_bundle") {
      if (!val.IsString()) return Bad(where, "must be a string");
      rc.ca_bundle = val.GetString();
      absl::Status st = CheckReadable(where, rc.ca_bundle);
      if (!st.ok()) return st;
    } else if (key == "credentials_file") {
      if (!val.IsString()) return Bad(where, "must be a string");
      rc.credentials_file = val.GetString();
      absl::Status st = CheckReadable(where, rc.credentials_file);
      if (!st.ok()) return st;
    } else if (key == "chunk_size") {
      if (!val.IsInt64() || val.GetInt64() < (64 << 10) || val.GetInt64() > (int64_t{1} << 32)) {
        return Bad(where, "must be an integer between 65536 and 4294967296 bytes");
      }
      rc.chunk_size = val.GetInt64();
    } else if (key == "concurrency") {
      if (!val.IsInt() || val.GetInt() < 1 || val.GetInt() > 1024) {
        return Bad(where, "must be an integer between 1 and 1024");
      }
      rc.concurrency = val.GetInt();
    } else {
      return Bad(where, "unknown key");
    }
  }
  return rc;
}

}  // namespace

absl::StatusOr<RegistryConfigMap> ParseConfigFile(absl::string_view json) {
  rapidjson::Document doc;
  RETURN_IF_ERROR(ParseUntrustedJson(json, "config", &doc));
  if (!doc.IsObject()) return Bad("top level", "must be an object");
  RegistryConfigMap out;
  for (auto& m : doc.GetObject()) {
    std::string key = m.name.GetString();
    if (key != "registries") return Bad(key, "unknown key (expected \"registries\")");
    if (!m.value.IsObject()) return Bad("registries", "must be an object");
    for (auto& r : m.value.GetObject()) {
      std::string name = r.name.GetString();
      if (name.empty() || name.find('/') != std::string::npos) {
        return Bad(absl::StrCat("registries.\"", name, "\""), "must be a host[:port]");
      }
      absl::StatusOr<RegistryConfig> rc = ParseRegistry(name, r.value);
      if (!rc.ok()) return rc.status();
      out[name] = *rc;
    }
  }
  return out;
}

}  // namespace regd
