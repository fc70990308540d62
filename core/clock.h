// Clock: the time seam. Production code uses SystemClock(); tests inject a
// FakeClock to drive token expiry and backoff without sleeping.
// Implementations are thread-safe.
#ifndef REGD_CORE_CLOCK_H_
#define REGD_CORE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace regd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

// The process-wide real clock (never destroyed).
Clock* SystemClock();

}  // namespace regd

#endif  // REGD_CORE_CLOCK_H_
