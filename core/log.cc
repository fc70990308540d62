#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/text.h"

namespace regd {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_access_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

thread_local LogContext t_context;

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "info";
}

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
    default:
      return 'I';
  }
}

// A JSON string (quoted), valid UTF-8 whatever came in.
void AppendJsonString(std::string* out, absl::string_view in) {
  const std::string s = SanitizeUtf8(in);
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

// Text: control bytes shown escaped, so that nothing from outside can start
// a line of its own.
void AppendText(std::string* out, absl::string_view in) {
  for (unsigned char c : in) {
    if (c == '\n') {
      out->append("\\n");
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out->append(buf);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
}

void Write(LogLevel level, absl::string_view msg, std::initializer_list<LogField> fields) {
  const absl::Time now = absl::Now();
  const LogContext& ctx = t_context;
  std::string line;
  line.reserve(128 + msg.size());
  if (static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)) == LogFormat::kJson) {
    absl::StrAppend(&line, "{\"ts\":\"",
                    absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", now, absl::UTCTimeZone()),
                    "\",\"level\":\"", LevelName(level), "\",\"msg\":");
    AppendJsonString(&line, msg);
    if (!ctx.request_id.empty()) {
      line.append(",\"request_id\":");
      AppendJsonString(&line, ctx.request_id);
    }
    if (!ctx.tenant.empty()) {
      line.append(",\"tenant\":");
      AppendJsonString(&line, ctx.tenant);
    }
    for (const LogField& f : fields) {
      line.push_back(',');
      AppendJsonString(&line, f.key);
      line.push_back(':');
      if (f.number) {
        line.append(f.value);
      } else {
        AppendJsonString(&line, f.value);
      }
    }
    line.append("}\n");
  } else {
    line.push_back(LevelLetter(level));
    absl::StrAppend(&line, absl::FormatTime(" %Y-%m-%dT%H:%M:%E3SZ ", now, absl::UTCTimeZone()));
    AppendText(&line, msg);
    for (const LogField& f : fields) {
      absl::StrAppend(&line, " ", f.key, "=");
      // logfmt: a value with spaces, '=' or '"' is quoted, so that text from
      // outside cannot pose as another field.
      if (f.value.find_first_of(" =\"") != std::string::npos) {
        std::string quoted;
        for (char c : f.value) {
          if (c == '"' || c == '\\') quoted.push_back('\\');
          quoted.push_back(c);
        }
        line.push_back('"');
        AppendText(&line, quoted);
        line.push_back('"');
      } else {
        AppendText(&line, f.value);
      }
    }
    if (!ctx.request_id.empty()) absl::StrAppend(&line, " request_id=", ctx.request_id);
    if (!ctx.tenant.empty()) {
      line.append(" tenant=");
      AppendText(&line, ctx.tenant);
    }
    line.push_back('\n');
  }
  (void)!::write(2, line.data(), line.size());
}

}  // namespace

void ConfigureLogging(const LogOptions& options) {
  g_level.store(static_cast<int>(options.level));
  g_access_level.store(static_cast<int>(options.access_level));
  g_format.store(static_cast<int>(options.format));
}

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "debug") return LogLevel::kDebug;
  if (n == "info") return LogLevel::kInfo;
  if (n == "warning" || n == "warn") return LogLevel::kWarning;
  if (n == "error") return LogLevel::kError;
  if (n == "off") return LogLevel::kOff;
  return absl::InvalidArgumentError("use one of debug, info, warning, error, off");
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError("use text or json");
}

bool LogEnabled(LogLevel level) {
  return level != LogLevel::kOff &&
         static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

LogContext CurrentLogContext() { return t_context; }

ScopedLogContext::ScopedLogContext(LogContext ctx) : saved_(std::move(t_context)) {
  t_context = std::move(ctx);
}
ScopedLogContext::~ScopedLogContext() { t_context = std::move(saved_); }

void LogEvent(LogLevel level, absl::string_view msg, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  Write(level, msg, fields);
}

void LogAccess(absl::string_view msg, std::initializer_list<LogField> fields) {
  const LogLevel level = static_cast<LogLevel>(g_access_level.load(std::memory_order_relaxed));
  if (!LogEnabled(level)) return;
  Write(level, msg, fields);
}

void LogLine(absl::string_view level, absl::string_view msg) {
  LogLevel l = LogLevel::kInfo;
  if (level == "W") l = LogLevel::kWarning;
  if (level == "E") l = LogLevel::kError;
  if (level == "D") l = LogLevel::kDebug;
  LogEvent(l, msg);
}

}  // namespace regd
