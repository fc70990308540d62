#include "core/read/metadata_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace regd {

MetadataCache::MetadataCache(int64_t capacity_bytes, Observer* observer)
    : capacity_(capacity_bytes > 0 ? capacity_bytes : 0),
      observer_(observer != nullptr ? observer : NullObserver()) {}

std::string MetadataCache::KeyOf(Kind kind, absl::string_view registry,
                                 absl::string_view repository, absl::string_view identity,
                                 absl::string_view digest) {
  // None of the parts can hold a newline: registries, repositories and
  // digests are validated by the reference grammar, identities are hex.
  return absl::StrCat(kind == Kind::kManifest ? "m" : "b", "\n", registry, "\n", repository, "\n",
                      identity, "\n", digest);
}

int64_t MetadataCache::ChargeOf(const std::string& key, const Content& content) {
  return static_cast<int64_t>(key.size() + content.data.size() + content.media_type.size()) +
         kEntryOverhead;
}

std::shared_ptr<const MetadataCache::Content> MetadataCache::Lookup(const std::string& key) {
  if (capacity_ == 0) return nullptr;
  std::shared_ptr<const Content> found;
  {
    absl::MutexLock lock(&mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      found = it->second->content;
    }
  }
  observer_->CacheLookup(found != nullptr);
  return found;
}

void MetadataCache::Insert(const std::string& key, Content content) {
  if (capacity_ == 0) return;
  const int64_t charge = ChargeOf(key, content);
  if (charge > capacity_ / 8) return;
  auto shared = std::make_shared<const Content>(std::move(content));
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it != index_.end()) {
    // Another call fetched the same content meanwhile: same digest, same bytes.
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  EvictFor(charge);
  lru_.push_front(Entry{key, std::move(shared), charge});
  index_.emplace(lru_.front().key, lru_.begin());
  bytes_ += charge;
  observer_->CacheBytes(bytes_);
}

void MetadataCache::EvictFor(int64_t charge) {
  while (!lru_.empty() && bytes_ + charge > capacity_) {
    Entry& last = lru_.back();
    bytes_ -= last.charge;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

int64_t MetadataCache::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t MetadataCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

}  // namespace regd
