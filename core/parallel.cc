#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/log.h"

namespace regd {

absl::Status RunParallel(size_t count, int threads, const CancelFlag& cancelled,
                         const std::function<absl::Status(size_t, const CancelFlag&)>& run) {
  CancelFlag stop = NewCancelFlag();
  absl::Mutex mu;
  size_t next = 0;
  absl::Status first_error;
  auto worker = [&](const CancelFlag& flag) {
    while (true) {
      size_t i;
      {
        absl::MutexLock lock(&mu);
        if (next >= count || !first_error.ok()) return;
        i = next++;
      }
      absl::Status st = run(i, flag);
      if (st.ok()) continue;
      absl::MutexLock lock(&mu);
      if (first_error.ok()) first_error = st;
      stop->store(true);
      return;
    }
  };
  const int n = static_cast<int>(std::min<size_t>(std::max(1, threads), count));
  std::vector<std::thread> started;
  started.reserve(n);
  std::atomic<int> running{0};
  for (int i = 0; i < n; ++i) {
    running.fetch_add(1);
    try {
      started.emplace_back([&, log_context = CurrentLogContext()] {
        ScopedLogContext scope(log_context);  // its lines name the call
        worker(stop);
        running.fetch_sub(1);
      });
    } catch (const std::system_error&) {
      running.fetch_sub(1);
      break;
    }
  }
  if (started.empty() && count > 0) worker(cancelled);  // not even one thread: this one
  while (running.load() > 0) {
    if (cancelled && cancelled->load()) stop->store(true);
    absl::SleepFor(absl::Milliseconds(20));
  }
  for (std::thread& t : started) t.join();
  if (cancelled && cancelled->load()) return absl::CancelledError("cancelled");
  return first_error;
}

}  // namespace regd
