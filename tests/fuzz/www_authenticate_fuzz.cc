// Fuzzes ParseWwwAuthenticate (the challenge of a registry's 401).
#include <cstddef>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "core/auth/challenge.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in = regd::fuzz::AsView(data, size);
  std::vector<regd::Challenge> challenges = regd::ParseWwwAuthenticate(in);
  for (const regd::Challenge& c : challenges) {
    FUZZ_CHECK(!c.scheme.empty());
    FUZZ_CHECK(c.scheme == absl::AsciiStrToLower(c.scheme));
    for (const auto& [key, value] : c.params) {
      FUZZ_CHECK(key == absl::AsciiStrToLower(key));
      FUZZ_CHECK(value.size() <= in.size());
    }
    (void)c.Param("realm");
    (void)c.Param("service");
    (void)c.Param("scope");
  }
  return 0;
}
