// Executor: runs blocking engine work off gRPC's callback threads.
//
// Each task gets its own worker thread (tasks block on the network for long
// stretches, and a fixed pool could deadlock when a push waits on its own blob
// uploads). The number of tasks running at once is capped; past the cap Submit
// fails with RESOURCE_EXHAUSTED so a flood of calls cannot exhaust the process.
//
// Thread-safe. Drain() must be called (and return) before destruction when
// tasks may still run.
#ifndef REGD_CORE_EXECUTOR_H_
#define REGD_CORE_EXECUTOR_H_

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace regd {

class Executor {
 public:
  explicit Executor(int max_tasks) : max_tasks_(max_tasks) {}
  ~Executor();

  // Starts `fn` on a worker thread, then `reply` (may be null) on the same
  // thread once `fn`'s slot is free again: a caller told "done" by `reply`
  // can start its next call at once without meeting the cap.
  // RESOURCE_EXHAUSTED at the cap, UNAVAILABLE once Drain has begun.
  [[nodiscard]] absl::Status Submit(std::function<void()> fn,
                                    std::function<void()> reply = nullptr);

  // Stops accepting tasks and waits for running ones until `deadline`.
  // True when none is left running.
  [[nodiscard]] bool Drain(absl::Time deadline);

  int running() const;

 private:
  const int max_tasks_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // tasks holding a slot (the cap)
  int alive_ ABSL_GUARDED_BY(mu_) = 0;    // worker threads not yet finished (Drain)
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace regd

#endif  // REGD_CORE_EXECUTOR_H_
