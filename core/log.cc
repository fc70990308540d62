#include "core/log.h"

#include <unistd.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace regd {

void LogLine(absl::string_view level, absl::string_view msg) {
  std::string line = absl::StrCat(
      level, absl::FormatTime(" %Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()), msg,
      "\n");
  (void)!::write(2, line.data(), line.size());
}

}  // namespace regd
