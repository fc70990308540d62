#include "core/upload/digest_cache.h"

namespace regd {

absl::StatusOr<std::string> DigestCache::Get(
    const std::string& identity, const std::function<absl::StatusOr<std::string>()>& compute) {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto it = entries_.find(identity);
    if (it == entries_.end()) break;
    if (!it->second.computing) return it->second.digest;
    // Another caller is hashing this file: wait for it (or for it to give up).
    std::pair<DigestCache*, const std::string*> arg(this, &identity);
    mu_.Await(absl::Condition(
        +[](std::pair<DigestCache*, const std::string*>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          auto e = a->first->entries_.find(*a->second);
          return e == a->first->entries_.end() || !e->second.computing;
        },
        &arg));
  }
  entries_[identity].computing = true;
  ++computations_;
  mu_.Unlock();
  absl::StatusOr<std::string> digest = compute();
  mu_.Lock();
  if (!digest.ok()) {
    entries_.erase(identity);
    return digest.status();
  }
  entries_[identity] = Entry{false, *digest};
  order_.push_back(identity);
  while (order_.size() > capacity_) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  return digest;
}

int64_t DigestCache::computations() const {
  absl::MutexLock lock(&mu_);
  return computations_;
}

}  // namespace regd
