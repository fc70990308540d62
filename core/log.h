// Logging: one line per event on stderr, as text or JSON (Debian's Abseil has
// no absl/log). Each line is written with a single write(2) so lines from
// threads never interleave.
//
// Levels: debug, info, warning, error (--log_level). The per-call access
// line has its own level (--access_log_level), so a busy daemon can keep its
// warnings and drop the line per call. In JSON (--log_format=json) every
// field is a key: {"ts","level","msg", ...}.
//
// A thread that works for a call carries its LogContext (request id, tenant):
// every line it writes names them. ScopedLogContext sets it for a scope; a
// call's worker threads take it along (see CurrentLogContext()).
//
// Callers must never pass credentials or tokens. Text from outside (registry
// answers, caller input) is escaped so that it cannot forge lines.
//
// Thread-safe. ConfigureLogging is meant for start-up.
#ifndef REGD_CORE_LOG_H_
#define REGD_CORE_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace regd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };
enum class LogFormat { kText, kJson };

struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  LogLevel access_level = LogLevel::kInfo;  // the per-call access line's level
  LogFormat format = LogFormat::kText;
};
void ConfigureLogging(const LogOptions& options);
// "debug", "info", "warning", "error", "off".
[[nodiscard]] absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
[[nodiscard]] absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);
bool LogEnabled(LogLevel level);

// The call a thread works for.
struct LogContext {
  std::string request_id;
  std::string tenant;
};
// The current thread's context (empty outside a call).
LogContext CurrentLogContext();

class ScopedLogContext {
 public:
  explicit ScopedLogContext(LogContext ctx);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  LogContext saved_;
};

// A field of a structured line. Values are strings (numbers are written as
// JSON numbers when `number` is set).
struct LogField {
  std::string key;
  std::string value;
  bool number = false;
};
inline LogField Field(absl::string_view key, absl::string_view value) {
  return LogField{std::string(key), std::string(value), false};
}
inline LogField Field(absl::string_view key, int64_t value) {
  return LogField{std::string(key), absl::StrCat(value), true};
}
inline LogField Field(absl::string_view key, double value) {
  return LogField{std::string(key), absl::StrCat(value), true};
}

// Writes one line at `level` (when enabled), with the thread's context.
void LogEvent(LogLevel level, absl::string_view msg, std::initializer_list<LogField> fields = {});
// The per-call access line, at the access level.
void LogAccess(absl::string_view msg, std::initializer_list<LogField> fields);

// The classic helpers: the arguments are concatenated into the message.
void LogLine(absl::string_view level, absl::string_view msg);  // "I", "W", "E", "D"

template <typename... Args>
void LogDebug(const Args&... args) {
  if (LogEnabled(LogLevel::kDebug)) LogEvent(LogLevel::kDebug, absl::StrCat(args...));
}
template <typename... Args>
void LogInfo(const Args&... args) {
  if (LogEnabled(LogLevel::kInfo)) LogEvent(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  if (LogEnabled(LogLevel::kWarning)) LogEvent(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  if (LogEnabled(LogLevel::kError)) LogEvent(LogLevel::kError, absl::StrCat(args...));
}

}  // namespace regd

#endif  // REGD_CORE_LOG_H_
