// Minimal stderr logging (Debian's Abseil has no absl/log). One line per call,
// written with a single write(2) so lines from threads do not interleave.
// Callers must never pass credentials or tokens.
#ifndef REGD_CORE_LOG_H_
#define REGD_CORE_LOG_H_

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace regd {

void LogLine(absl::string_view level, absl::string_view msg);

template <typename... Args>
void LogInfo(const Args&... args) {
  LogLine("I", absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  LogLine("W", absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine("E", absl::StrCat(args...));
}

}  // namespace regd

#endif  // REGD_CORE_LOG_H_
