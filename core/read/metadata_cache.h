// MetadataCache: manifests and configs fetched by digest, kept in memory.
//
// Content named by its digest cannot change, so a manifest fetched by digest
// (or a config blob, always fetched by digest) and verified against that
// digest may be served again without asking the registry. Tag lookups are
// never cached: a tag can move, and every tag lookup asks the registry.
//
// Who may be served: every key names the registry, the repository and the
// identity of the credentials that fetched the content (CredentialIdentity:
// "anonymous" for none). An entry exists only after that identity's request
// for that repository was answered 200 and the bytes matched the digest, so a
// caller whose own credentials were never accepted for the repository never
// finds one. Policy checks run before any lookup (ReadService).
//
// Bounded by bytes: each entry is charged its key, its bytes, its media type
// and kEntryOverhead; past the capacity the least recently used entries go.
// An entry larger than capacity / 8 is not kept; capacity 0 keeps nothing.
//
// Thread-safe. Values are shared immutable snapshots, so a hit copies nothing
// under the lock. Reports hits, misses and bytes held to its Observer.
#ifndef REGD_CORE_READ_METADATA_CACHE_H_
#define REGD_CORE_READ_METADATA_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/observer.h"

namespace regd {

class MetadataCache {
 public:
  // What is cached under one key: verified bytes, the media type they were
  // served with ("" for a blob), and the caller's own classification of them
  // (ReadService: the ManifestKind it detected).
  struct Content {
    std::string data;
    std::string media_type;
    int kind = 0;
  };
  // Manifests and blobs live apart: the same digest may be fetched both ways,
  // with different media types.
  enum class Kind { kManifest, kBlob };
  // Bytes charged to every entry beyond its strings (list node, map slot,
  // string headers).
  static constexpr int64_t kEntryOverhead = 160;

  // `observer` may be null (nobody hears); it must outlive the cache.
  explicit MetadataCache(int64_t capacity_bytes, Observer* observer = nullptr);
  MetadataCache(const MetadataCache&) = delete;
  MetadataCache& operator=(const MetadataCache&) = delete;

  // The key of `digest` in `repository` of `registry`, for the credentials
  // whose CredentialIdentity is `identity`.
  static std::string KeyOf(Kind kind, absl::string_view registry, absl::string_view repository,
                           absl::string_view identity, absl::string_view digest);
  // What an entry costs.
  static int64_t ChargeOf(const std::string& key, const Content& content);

  // The content under `key` (now the most recently used), or null.
  std::shared_ptr<const Content> Lookup(const std::string& key);
  // Keeps `content` under `key`, evicting the least recently used entries to
  // make room. Call only with content verified against the digest in `key`.
  // Too large (over capacity / 8) or capacity 0: nothing is kept.
  void Insert(const std::string& key, Content content);

  int64_t capacity() const { return capacity_; }
  int64_t bytes() const;
  size_t size() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Content> content;
    int64_t charge = 0;
  };
  using List = std::list<Entry>;

  void EvictFor(int64_t charge) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t capacity_;
  Observer* const observer_;
  mutable absl::Mutex mu_;
  // Most recently used first.
  List lru_ ABSL_GUARDED_BY(mu_);
  // Views of the keys held by lru_'s nodes (which never move).
  std::unordered_map<std::string_view, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_READ_METADATA_CACHE_H_
