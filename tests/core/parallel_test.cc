#include "core/parallel.h"

#include <atomic>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(RunParallelTest, RunsEveryJobOnce) {
  std::vector<std::atomic<int>> ran(100);
  absl::Status st = RunParallel(ran.size(), 4, NewCancelFlag(), [&](size_t i, const CancelFlag&) {
    ran[i].fetch_add(1);
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  for (auto& r : ran) EXPECT_EQ(r.load(), 1);
  EXPECT_TRUE(RunParallel(0, 4, NewCancelFlag(), [](size_t, const CancelFlag&) {
                return absl::InternalError("never");
              }).ok());
}

TEST(RunParallelTest, FirstFailureStopsTheRest) {
  std::atomic<int> started{0};
  absl::Status st = RunParallel(1000, 2, NewCancelFlag(), [&](size_t i, const CancelFlag&) {
    started.fetch_add(1);
    if (i == 3) return absl::DataLossError("job 3");
    absl::SleepFor(absl::Milliseconds(1));
    return absl::OkStatus();
  });
  EXPECT_TRUE(absl::IsDataLoss(st)) << st;
  EXPECT_LT(started.load(), 10);  // no job starts after the failure
}

TEST(RunParallelTest, CallersCancellationReachesTheJobs) {
  CancelFlag cancelled = NewCancelFlag();
  absl::Status st = RunParallel(8, 8, cancelled, [&](size_t, const CancelFlag& stop) {
    cancelled->store(true);
    while (!stop->load()) absl::SleepFor(absl::Milliseconds(1));
    return absl::CancelledError("stopped");
  });
  EXPECT_TRUE(absl::IsCancelled(st)) << st;
}

}  // namespace
}  // namespace regd
