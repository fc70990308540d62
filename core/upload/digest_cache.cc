#include "core/upload/digest_cache.h"

namespace regd {

absl::StatusOr<std::string> DigestCache::Get(
    const std::string& identity, const std::function<absl::StatusOr<std::string>()>& compute,
    bool remember, const std::atomic<bool>* cancelled) {
  absl::MutexLock lock(&mu_);
  uint64_t waited_for = 0;  // the computation this caller waited on, if any
  while (true) {
    auto it = entries_.find(identity);
    if (it == entries_.end()) break;
    Entry& e = it->second;
    if (!e.computing) {
      if (e.remembered || e.generation == waited_for) return e.digest;
      break;  // an unremembered result for someone else: compute our own
    }
    // Another caller is hashing this file: wait for it (or for it to give up).
    waited_for = e.generation;
    std::pair<DigestCache*, const std::string*> arg(this, &identity);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::pair<DigestCache*, const std::string*>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              auto found = a->first->entries_.find(*a->second);
              return found == a->first->entries_.end() || !found->second.computing;
            },
            &arg),
        absl::Milliseconds(100));
    if (cancelled != nullptr && cancelled->load()) return absl::CancelledError("cancelled");
  }
  const uint64_t generation = ++next_generation_;
  entries_[identity] = Entry{true, "", generation, remember};
  ++computations_;
  mu_.Unlock();
  absl::StatusOr<std::string> digest = compute();
  mu_.Lock();
  if (!digest.ok()) {
    entries_.erase(identity);
    return digest.status();
  }
  entries_[identity] = Entry{false, *digest, generation, remember};
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
