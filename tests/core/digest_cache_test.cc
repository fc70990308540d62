#include "core/upload/digest_cache.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace regd {
namespace {

TEST(DigestCache, ConcurrentCallersHashOnce) {
  DigestCache cache;
  std::atomic<int> passes{0};
  auto compute = [&]() -> absl::StatusOr<std::string> {
    passes.fetch_add(1);
    absl::SleepFor(absl::Milliseconds(50));
    return std::string("sha256:x");
  };
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] { ok.fetch_add(cache.Get("f", compute).value_or("") == "sha256:x"); });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(passes.load(), 1);
  EXPECT_EQ(*cache.Get("f", compute), "sha256:x");
  EXPECT_EQ(passes.load(), 1);
}

TEST(DigestCache, UnrememberedResultsAreSharedOnlyWithWaiters) {
  DigestCache cache;
  std::atomic<int> passes{0};
  auto compute = [&]() -> absl::StatusOr<std::string> {
    passes.fetch_add(1);
    absl::SleepFor(absl::Milliseconds(300));
    return std::string("sha256:y");
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] { EXPECT_EQ(cache.Get("g", compute, false).value_or(""), "sha256:y"); });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(passes.load(), 1);
  // A later caller does not trust it: the file may have changed since.
  EXPECT_EQ(*cache.Get("g", compute, false), "sha256:y");
  EXPECT_EQ(passes.load(), 2);
}

TEST(DigestCache, FailuresAreNotCachedAndCapacityBounds) {
  DigestCache cache(2);
  int n = 0;
  auto fail = [&]() -> absl::StatusOr<std::string> {
    ++n;
    return absl::DataLossError("read error");
  };
  EXPECT_FALSE(cache.Get("a", fail).ok());
  EXPECT_FALSE(cache.Get("a", fail).ok());
  EXPECT_EQ(n, 2);
  auto good = [&]() -> absl::StatusOr<std::string> { return std::to_string(++n); };
  EXPECT_EQ(*cache.Get("a", good), "3");
  EXPECT_EQ(*cache.Get("b", good), "4");
  EXPECT_EQ(*cache.Get("c", good), "5");  // evicts "a"
  EXPECT_EQ(*cache.Get("a", good), "6");
  EXPECT_EQ(cache.computations(), 6);
}

}  // namespace
}  // namespace regd
