#include "core/executor.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(ExecutorTest, ReusesIdleThreadsForShortTasks) {
  Executor ex(8);
  std::atomic<int> done{0};
  for (int i = 0; i < 2000; ++i) {
    absl::Notification n;
    ASSERT_TRUE(ex.Submit([&] { done.fetch_add(1); }, [&] { n.Notify(); }).ok());
    n.WaitForNotification();
  }
  EXPECT_EQ(done.load(), 2000);
  // One call at a time: one or two threads, not one per call.
  EXPECT_LE(ex.threads(), 2);
  EXPECT_TRUE(ex.Drain(absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(ex.threads(), 0);
}

TEST(ExecutorTest, CapsRunningTasksAndRunsThemConcurrently) {
  Executor ex(4);
  absl::Notification release;
  std::atomic<int> started{0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ex.Submit([&] {
                    started.fetch_add(1);
                    release.WaitForNotification();
                  }).ok());
  }
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (started.load() < 4 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(started.load(), 4);  // blocking tasks never wait for each other
  EXPECT_TRUE(absl::IsResourceExhausted(ex.Submit([] {})));
  EXPECT_FALSE(ex.Drain(absl::Now() + absl::Milliseconds(50)));
  release.Notify();
  EXPECT_TRUE(ex.Drain(absl::Now() + absl::Seconds(5)));
  EXPECT_TRUE(absl::IsUnavailable(ex.Submit([] {})));
}

TEST(ExecutorTest, IdleWorkersExitAfterTheTimeout) {
  Executor ex(16, 32, absl::Milliseconds(50));
  absl::Notification release;
  std::atomic<int> finished{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(ex.Submit([&] {
                    release.WaitForNotification();
                    finished.fetch_add(1);
                  }).ok());
  }
  release.Notify();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while ((finished.load() < 8 || ex.threads() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(ex.threads(), 0);
  ASSERT_TRUE(ex.Submit([] {}).ok());  // joins the exited ones, starts a new one
  EXPECT_TRUE(ex.Drain(absl::Now() + absl::Seconds(5)));
}

}  // namespace
}  // namespace regd
