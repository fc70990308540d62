#include "core/auth/token_cache.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace regd {
namespace {

class FakeClock : public Clock {
 public:
  absl::Time Now() override {
    absl::MutexLock l(&mu);
    return now;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu);
    now += d;
  }
  absl::Mutex mu;
  absl::Time now = absl::FromUnixSeconds(1000);
};

TEST(TokenCache, IsBoundedAndEvictsExpiredFirst) {
  FakeClock clock;
  TokenCache cache(&clock, 3);
  auto fetch_for = [](absl::Duration life) {
    return [life]() -> absl::StatusOr<BearerToken> { return BearerToken{"t", life}; };
  };
  ASSERT_TRUE(cache.Get("short", fetch_for(absl::Seconds(10))).ok());
  ASSERT_TRUE(cache.Get("long1", fetch_for(absl::Seconds(600))).ok());
  ASSERT_TRUE(cache.Get("long2", fetch_for(absl::Seconds(600))).ok());
  clock.Advance(absl::Seconds(20));  // "short" has expired
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(cache.Get("k" + std::to_string(i), fetch_for(absl::Seconds(600))).ok());
    EXPECT_LE(cache.size(), 3u);
  }
  // 1,003 fetches, and asking for a recent key again costs none.
  int64_t before = cache.fetches();
  ASSERT_TRUE(cache.Get("k999", fetch_for(absl::Seconds(600))).ok());
  EXPECT_EQ(cache.fetches(), before);
}

TEST(TokenCache, ReusesUntilShortlyBeforeExpiry) {
  FakeClock clock;
  TokenCache cache(&clock);
  int fetches = 0;
  auto fetch = [&]() -> absl::StatusOr<BearerToken> {
    ++fetches;
    return BearerToken{"t" + std::to_string(fetches), absl::Seconds(300)};
  };
  EXPECT_EQ(*cache.Get("k", fetch), "t1");
  clock.Advance(absl::Seconds(200));
  EXPECT_EQ(*cache.Get("k", fetch), "t1");
  clock.Advance(absl::Seconds(75));  // 275 s: inside the 30 s margin
  EXPECT_EQ(*cache.Get("k", fetch), "t2");
  EXPECT_EQ(*cache.Get("other", fetch), "t3");  // keyed by scope
  EXPECT_EQ(cache.fetches(), 3);
}

TEST(TokenCache, ShortLivedTokensUseAFifthMargin) {
  FakeClock clock;
  TokenCache cache(&clock);
  int fetches = 0;
  auto fetch = [&]() -> absl::StatusOr<BearerToken> {
    ++fetches;
    return BearerToken{"t", absl::Seconds(10)};
  };
  ASSERT_TRUE(cache.Get("k", fetch).ok());
  clock.Advance(absl::Seconds(7));
  ASSERT_TRUE(cache.Get("k", fetch).ok());
  EXPECT_EQ(fetches, 1);
  clock.Advance(absl::Seconds(1.5));  // 8.5 s > 10 - 2
  ASSERT_TRUE(cache.Get("k", fetch).ok());
  EXPECT_EQ(fetches, 2);
}

TEST(TokenCache, ConcurrentCallersShareOneFetch) {
  FakeClock clock;
  TokenCache cache(&clock);
  std::atomic<int> fetches{0};
  auto fetch = [&]() -> absl::StatusOr<BearerToken> {
    fetches.fetch_add(1);
    absl::SleepFor(absl::Milliseconds(100));  // let the others pile up
    return BearerToken{"shared", absl::Seconds(60)};
  };
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      auto t = cache.Get("k", fetch);
      if (t.ok() && *t == "shared") ok.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 50);
  EXPECT_EQ(fetches.load(), 1);
}

TEST(TokenCache, WaitersShareAFailureThenRetryLater) {
  FakeClock clock;
  TokenCache cache(&clock);
  std::atomic<int> fetches{0};
  auto fail = [&]() -> absl::StatusOr<BearerToken> {
    fetches.fetch_add(1);
    absl::SleepFor(absl::Milliseconds(100));
    return absl::UnauthenticatedError("no");
  };
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int i = 0; i < 10; ++i) {
    threads.emplace_back([&] {
      if (absl::IsUnauthenticated(cache.Get("k", fail).status())) errors.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 10);
  EXPECT_LE(fetches.load(), 2);
  auto good = [&]() -> absl::StatusOr<BearerToken> { return BearerToken{"ok", absl::Seconds(60)}; };
  EXPECT_EQ(*cache.Get("k", good), "ok");
}

TEST(TokenCache, InvalidateDropsOnlyThatToken) {
  FakeClock clock;
  TokenCache cache(&clock);
  int n = 0;
  auto fetch = [&]() -> absl::StatusOr<BearerToken> {
    return BearerToken{"t" + std::to_string(++n), absl::Seconds(60)};
  };
  EXPECT_EQ(*cache.Get("k", fetch), "t1");
  cache.Invalidate("k", "stale-other");
  EXPECT_EQ(*cache.Get("k", fetch), "t1");
  cache.Invalidate("k", "t1");
  EXPECT_EQ(*cache.Get("k", fetch), "t2");
}

}  // namespace
}  // namespace regd
