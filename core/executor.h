// Executor: runs blocking engine work off gRPC's callback threads.
//
// A cached thread pool: a task goes to an idle worker thread, else to a new
// one (tasks block on the network for long stretches, and a fixed pool could
// deadlock when a push waits on its own blob uploads). Idle workers wait
// `idle_timeout` for the next task, at most `max_idle` of them, then exit; so
// a burst of short calls (Exists, a cached Inspect) reuses threads instead of
// creating one per call. Threads are joined, never detached. The number of
// tasks running at once is capped; past the cap Submit fails with
// RESOURCE_EXHAUSTED so a flood of calls cannot exhaust the process.
//
// Thread-safe. Drain() must be called (and return) before destruction when
// tasks may still run.
#ifndef REGD_CORE_EXECUTOR_H_
#define REGD_CORE_EXECUTOR_H_

#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace regd {

class Executor {
 public:
  explicit Executor(int max_tasks, int max_idle = 32,
                    absl::Duration idle_timeout = absl::Seconds(30))
      : max_tasks_(max_tasks), max_idle_(max_idle), idle_timeout_(idle_timeout) {}
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Starts `fn` on a worker thread, then `reply` (may be null) on the same
  // thread once `fn`'s slot is free again: a caller told "done" by `reply`
  // can start its next call at once without meeting the cap.
  // RESOURCE_EXHAUSTED at the cap, UNAVAILABLE once Drain has begun.
  [[nodiscard]] absl::Status Submit(std::function<void()> fn,
                                    std::function<void()> reply = nullptr);

  // Stops accepting tasks and waits for running ones until `deadline`.
  // True when none is left running (then every worker thread is joined).
  [[nodiscard]] bool Drain(absl::Time deadline);

  int running() const;
  // Worker threads alive (busy or idle).
  int threads() const;

 private:
  struct Task {
    std::function<void()> fn;
    std::function<void()> reply;
  };
  void WorkerLoop(int id);
  // Joins workers that have exited. Called without mu_ held.
  void JoinExited();

  const int max_tasks_;
  const int max_idle_;
  const absl::Duration idle_timeout_;
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;    // tasks holding a slot (the cap)
  int busy_ ABSL_GUARDED_BY(mu_) = 0;       // tasks queued or running, reply included (Drain)
  int idle_ ABSL_GUARDED_BY(mu_) = 0;       // workers waiting for a task
  int finishing_ ABSL_GUARDED_BY(mu_) = 0;  // workers sending a reply, then back
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> exited_ ABSL_GUARDED_BY(mu_);  // to be joined
};

}  // namespace regd

#endif  // REGD_CORE_EXECUTOR_H_
