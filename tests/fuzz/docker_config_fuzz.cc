// Fuzzes the docker config (config.json: auths, credHelpers, credsStore) with
// CredentialsFromDockerConfig, and credentials files with ParseCredentialsFile.
//
// Input: one selector byte, then the JSON; a NUL byte ends the JSON, and what
// follows is the credential helper's stdout in the echo mode. The selector
// picks the registry asked for (low 3 bits) and what the helper does (next 2
// bits): fixed good JSON, NotFound, echo, or fail. No program is ever run.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "core/auth/credentials.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr const char* kRegistries[] = {
    "docker.io",       "ghcr.io", "localhost:5000", "127.0.0.1:5000", "registry.example.com",
    "index.docker.io", "quay.io", "[::1]:5000",
};

// The fixed helper answer's secret, which must never show up in a status.
constexpr absl::string_view kHelperSecret = "fuzz-helper-secret-7f3a";

void CheckNoSecret(const absl::Status& st) {
  FUZZ_CHECK(!absl::StrContains(st.message(), kHelperSecret));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in = regd::fuzz::AsView(data, size);
  const uint8_t selector = regd::fuzz::TakeByte(&in);
  std::vector<absl::string_view> parts = regd::fuzz::SplitInto(in, '\0', 2);
  const absl::string_view json = parts[0];
  const std::string helper_output(parts[1]);
  const std::string registry = kRegistries[selector % std::size(kRegistries)];
  const int helper_mode = (selector >> 3) & 3;

  int helper_calls = 0;
  regd::HelperRunner runner = [&](const std::string& helper,
                                  const std::string& server) -> absl::StatusOr<std::string> {
    ++helper_calls;
    switch (helper_mode) {
      case 0:
        return std::string(R"({"ServerURL":"x","Username":"fuzz","Secret":")") +
               std::string(kHelperSecret) + "\"}";
      case 1:
        return absl::NotFoundError("credentials not found in native keychain");
      case 2:
        return helper_output;
      default:
        return absl::InternalError("helper exited with status 1");
    }
  };

  absl::StatusOr<regd::Credentials> c = regd::CredentialsFromDockerConfig(json, registry, runner);
  FUZZ_CHECK(helper_calls <= 2);
  if (helper_mode == 0) CheckNoSecret(c.status());
  if (c.ok() && helper_mode == 0 && helper_calls > 0) {
    FUZZ_CHECK(c->password == kHelperSecret || c->identity_token == kHelperSecret);
  }

  absl::StatusOr<regd::Credentials> file = regd::ParseCredentialsFile(json);
  if (file.ok()) FUZZ_CHECK(!file->empty());
  return 0;
}
