// Text that came from outside (a caller, a registry, a helper program) on its
// way into a Status message, a log line or a proto string: bounded, valid
// UTF-8, and with anything that looks like a credential redacted.
//
// Pure functions; thread-safe.
#ifndef REGD_CORE_TEXT_H_
#define REGD_CORE_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace regd {

// `s` as valid UTF-8: each byte that does not start or continue a valid
// sequence becomes U+FFFD. Valid input comes back unchanged.
std::string SanitizeUtf8(absl::string_view s);
bool IsValidUtf8(absl::string_view s);

// For quoting caller or registry text in a message: valid UTF-8, control
// characters escaped, cut to at most about `max_bytes` with the full length
// noted ("abc… (1048576 bytes)").
std::string ForMessage(absl::string_view s, size_t max_bytes = 200);

// Replaces what looks like a secret with "[redacted]": the value after
// "Bearer " / "Basic " / "Authorization:", JSON or form fields named like
// token, password, secret or auth, and long base64-looking runs of 40+
// characters. Meant for registry error bodies and helper output before
// they reach a Status or a log.
std::string RedactSecrets(absl::string_view s);

// RedactSecrets then ForMessage: the one call for registry text in messages.
std::string ForeignText(absl::string_view s, size_t max_bytes = 300);

}  // namespace regd

#endif  // REGD_CORE_TEXT_H_
