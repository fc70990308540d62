// Fuzzes ParseTokenResponse (a token service's JSON answer).
#include <cstddef>
#include <cstdint>

#include "core/auth/authenticator.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<regd::BearerToken> tok = regd::ParseTokenResponse(regd::fuzz::AsView(data, size));
  if (tok.ok()) {
    FUZZ_CHECK(!tok->value.empty());
    // It goes into an Authorization header as is.
    for (char c : tok->value) {
      FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f);
    }
    FUZZ_CHECK(tok->lifetime >= absl::ZeroDuration());
    FUZZ_CHECK(tok->lifetime <= absl::Hours(24));
  }
  return 0;
}
