// Parsing JSON that came from outside (a registry, a caller, a file).
//
// Every JSON document regd reads goes through ParseUntrustedJson: its size is
// capped before parsing, its nesting depth is checked by a flat scan before
// RapidJSON sees it, RapidJSON runs its iterative (non-recursive) parser, and
// invalid UTF-8 is refused. So no document, however deep or odd, can overflow
// the stack or put invalid UTF-8 into a proto string.
//
// Free functions; thread-compatible.
#ifndef REGD_CORE_JSON_H_
#define REGD_CORE_JSON_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rapidjson/document.h"

namespace regd {

struct JsonLimits {
  size_t max_bytes = 4 << 20;  // larger documents: RESOURCE_EXHAUSTED
  int max_depth = 64;          // deeper nesting of [ and {: INVALID_ARGUMENT
};

// Parses `text` into `*doc`. INVALID_ARGUMENT (naming `what`) for invalid
// JSON, invalid UTF-8 or too deep nesting; RESOURCE_EXHAUSTED when too big.
[[nodiscard]] absl::Status ParseUntrustedJson(absl::string_view text, absl::string_view what,
                                              rapidjson::Document* doc,
                                              const JsonLimits& limits = JsonLimits());

// The deepest nesting of arrays and objects in `text` (strings skipped), or
// -1 once it passes `stop_above` (the scan stops there).
int JsonNestingDepth(absl::string_view text, int stop_above);

// A JSON string member of `obj` as std::string (embedded NULs kept), or "".
std::string JsonStringMember(const rapidjson::Value& obj, const char* key);

}  // namespace regd

#endif  // REGD_CORE_JSON_H_
