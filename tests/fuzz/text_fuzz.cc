// Fuzzes the text path from outside into statuses, logs and proto strings
// (core/text.h): SanitizeUtf8, IsValidUtf8, ForMessage, RedactSecrets,
// ForeignText. Whatever comes in, what goes out is valid UTF-8 and bounded.
//
// Input: one byte choosing max_bytes (its value, 0..255), then the text.
#include <cstddef>
#include <cstdint>

#include "core/text.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in = regd::fuzz::AsView(data, size);
  const size_t max_bytes = regd::fuzz::TakeByte(&in);

  const bool valid = regd::IsValidUtf8(in);
  const std::string clean = regd::SanitizeUtf8(in);
  FUZZ_CHECK(regd::IsValidUtf8(clean));
  if (valid) FUZZ_CHECK(clean == in);
  FUZZ_CHECK(regd::SanitizeUtf8(clean) == clean);

  // Cut at about max_bytes: one more character (an escape is 4 bytes, U+FFFD 3)
  // and the note of the full length.
  constexpr size_t kSlack = 4 + 40;
  const std::string msg = regd::ForMessage(in, max_bytes);
  FUZZ_CHECK(regd::IsValidUtf8(msg));
  FUZZ_CHECK(msg.size() <= max_bytes + kSlack);
  for (char c : msg) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);

  const std::string redacted = regd::RedactSecrets(in);
  if (valid) FUZZ_CHECK(regd::IsValidUtf8(redacted));

  const std::string foreign = regd::ForeignText(in, max_bytes);
  FUZZ_CHECK(regd::IsValidUtf8(foreign));
  FUZZ_CHECK(foreign.size() <= max_bytes + kSlack);
  return 0;
}
