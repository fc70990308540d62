#include "core/read/metadata_cache.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace regd {
namespace {

using Kind = MetadataCache::Kind;

std::string Digest(int i) { return absl::StrCat("sha256:", std::string(60, 'a'), 1000 + i); }

std::string KeyFor(const std::string& identity, int i, Kind kind = Kind::kManifest) {
  return MetadataCache::KeyOf(kind, "registry.example:5000", "team/app", identity, Digest(i));
}

MetadataCache::Content Bytes(size_t n, char c = 'x') {
  return MetadataCache::Content{std::string(n, c), "application/vnd.oci.image.manifest.v1+json", 1};
}

// Observer that counts what the cache reports.
class CountingObserver : public Observer {
 public:
  void CacheLookup(bool hit) override { (hit ? hits : misses).fetch_add(1); }
  void CacheBytes(int64_t b) override { bytes.store(b); }
  std::atomic<int> hits{0}, misses{0};
  std::atomic<int64_t> bytes{-1};
};

TEST(MetadataCache, ServesWhatWasInserted) {
  CountingObserver obs;
  MetadataCache cache(1 << 20, &obs);
  const std::string key = KeyFor("anonymous", 1);
  EXPECT_EQ(cache.Lookup(key), nullptr);
  cache.Insert(key, Bytes(100, 'm'));
  std::shared_ptr<const MetadataCache::Content> got = cache.Lookup(key);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->data, std::string(100, 'm'));
  EXPECT_EQ(got->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(got->kind, 1);
  EXPECT_EQ(obs.hits.load(), 1);
  EXPECT_EQ(obs.misses.load(), 1);
  EXPECT_EQ(cache.bytes(), MetadataCache::ChargeOf(key, Bytes(100)));
  EXPECT_EQ(obs.bytes.load(), cache.bytes());
}

TEST(MetadataCache, KeysSeparateEveryPart) {
  const std::string base = MetadataCache::KeyOf(Kind::kManifest, "r", "p", "anonymous", "d");
  EXPECT_NE(base, MetadataCache::KeyOf(Kind::kBlob, "r", "p", "anonymous", "d"));
  EXPECT_NE(base, MetadataCache::KeyOf(Kind::kManifest, "r2", "p", "anonymous", "d"));
  EXPECT_NE(base, MetadataCache::KeyOf(Kind::kManifest, "r", "p2", "anonymous", "d"));
  EXPECT_NE(base, MetadataCache::KeyOf(Kind::kManifest, "r", "p", "c:1234", "d"));
  EXPECT_NE(base, MetadataCache::KeyOf(Kind::kManifest, "r", "p", "anonymous", "d2"));
}

TEST(MetadataCache, IdentitiesAreIsolated) {
  MetadataCache cache(1 << 20);
  cache.Insert(KeyFor("c:alice", 1), Bytes(50));
  EXPECT_NE(cache.Lookup(KeyFor("c:alice", 1)), nullptr);
  EXPECT_EQ(cache.Lookup(KeyFor("c:mallory", 1)), nullptr);
  EXPECT_EQ(cache.Lookup(KeyFor("anonymous", 1)), nullptr);
  // Nor another repository of the same registry, nor a blob of that digest.
  EXPECT_EQ(cache.Lookup(MetadataCache::KeyOf(Kind::kManifest, "registry.example:5000",
                                              "team/other", "c:alice", Digest(1))),
            nullptr);
  EXPECT_EQ(cache.Lookup(KeyFor("c:alice", 1, Kind::kBlob)), nullptr);
}

TEST(MetadataCache, EvictsLeastRecentlyUsedByBytes) {
  const int64_t charge = MetadataCache::ChargeOf(KeyFor("anonymous", 0), Bytes(1000));
  // Room for exactly 32 entries of this size.
  MetadataCache cache(charge * 32);
  for (int i = 0; i < 32; ++i) cache.Insert(KeyFor("anonymous", i), Bytes(1000));
  EXPECT_EQ(cache.size(), 32u);
  EXPECT_EQ(cache.bytes(), charge * 32);
  // Touch entry 0: it becomes the most recently used, so 1 goes first.
  ASSERT_NE(cache.Lookup(KeyFor("anonymous", 0)), nullptr);
  cache.Insert(KeyFor("anonymous", 100), Bytes(1000));
  EXPECT_EQ(cache.size(), 32u);
  EXPECT_LE(cache.bytes(), cache.capacity());
  EXPECT_NE(cache.Lookup(KeyFor("anonymous", 0)), nullptr);
  EXPECT_EQ(cache.Lookup(KeyFor("anonymous", 1)), nullptr);
  EXPECT_NE(cache.Lookup(KeyFor("anonymous", 2)), nullptr);
  EXPECT_NE(cache.Lookup(KeyFor("anonymous", 100)), nullptr);
  // A bigger entry pushes out as many of the oldest as it needs: 3, 4, ...
  // (0, 2 and 100 were used since).
  const int64_t big = MetadataCache::ChargeOf(KeyFor("anonymous", 200), Bytes(3100));
  const int64_t need = (big + charge - 1) / charge;
  ASSERT_GE(need, 3);
  cache.Insert(KeyFor("anonymous", 200), Bytes(3100));
  EXPECT_LE(cache.bytes(), cache.capacity());
  EXPECT_EQ(cache.size(), static_cast<size_t>(32 - need + 1));
  for (int i = 3; i < 32; ++i) {
    EXPECT_EQ(cache.Lookup(KeyFor("anonymous", i)) == nullptr, i < 3 + need) << i;
  }
  EXPECT_NE(cache.Lookup(KeyFor("anonymous", 200)), nullptr);
}

TEST(MetadataCache, RefusesAnEntryOverAnEighthOfCapacity) {
  MetadataCache cache(80000);
  cache.Insert(KeyFor("anonymous", 1), Bytes(5000));
  cache.Insert(KeyFor("anonymous", 2), Bytes(20000));  // > 10000: not kept
  EXPECT_NE(cache.Lookup(KeyFor("anonymous", 1)), nullptr);
  EXPECT_EQ(cache.Lookup(KeyFor("anonymous", 2)), nullptr);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(MetadataCache, CapacityZeroKeepsNothing) {
  CountingObserver obs;
  MetadataCache cache(0, &obs);
  cache.Insert(KeyFor("anonymous", 1), Bytes(1));
  EXPECT_EQ(cache.Lookup(KeyFor("anonymous", 1)), nullptr);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.bytes(), 0);
  EXPECT_EQ(obs.hits.load() + obs.misses.load(), 0);  // a disabled cache is not asked
}

TEST(MetadataCache, ReinsertKeepsOneEntry) {
  MetadataCache cache(1 << 20);
  cache.Insert(KeyFor("anonymous", 1), Bytes(100));
  const int64_t bytes = cache.bytes();
  cache.Insert(KeyFor("anonymous", 1), Bytes(100));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), bytes);
}

TEST(MetadataCache, AHitOutlivesItsEviction) {
  MetadataCache cache(8 * MetadataCache::ChargeOf(KeyFor("anonymous", 0), Bytes(500)));
  cache.Insert(KeyFor("anonymous", 0), Bytes(500, 'z'));
  std::shared_ptr<const MetadataCache::Content> held = cache.Lookup(KeyFor("anonymous", 0));
  ASSERT_NE(held, nullptr);
  for (int i = 1; i <= 16; ++i) cache.Insert(KeyFor("anonymous", i), Bytes(500));
  EXPECT_EQ(cache.Lookup(KeyFor("anonymous", 0)), nullptr);
  EXPECT_EQ(held->data, std::string(500, 'z'));
}

TEST(MetadataCache, ConcurrentCallersStayWithinCapacity) {
  CountingObserver obs;
  const int64_t capacity = 64 << 10;
  MetadataCache cache(capacity, &obs);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::string identity = absl::StrCat("c:", t % 3);
      for (int i = 0; i < 2000; ++i) {
        const int d = (i * 7 + t) % 97;
        const std::string key = KeyFor(identity, d);
        const char c = static_cast<char>('a' + d % 26);
        if (std::shared_ptr<const MetadataCache::Content> got = cache.Lookup(key)) {
          if (got->data != std::string(200 + d, c)) wrong.fetch_add(1);
        } else {
          cache.Insert(key, Bytes(200 + d, c));
        }
        if (cache.bytes() > capacity) wrong.fetch_add(1);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.bytes(), capacity);
  EXPECT_EQ(obs.hits.load() + obs.misses.load(), 8 * 2000);
  EXPECT_GT(obs.hits.load(), 0);
}

}  // namespace
}  // namespace regd
