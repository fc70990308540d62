#include "core/auth/token_cache.h"

#include <algorithm>

namespace regd {

void TokenCache::SetTokenLocked(Entry& e, std::string token) {
  bytes_ -= e.token.size();
  e.token = std::move(token);
  e.token.shrink_to_fit();
  bytes_ += e.token.size();
}

bool TokenCache::EvictLocked(const Entry* keep) {
  const absl::Time now = clock_->Now();
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const Entry& e = it->second;
    if (e.users > 0 || e.fetching || &e == keep) continue;
    if (e.refresh_at <= now) {  // expired (or never held a token): best choice
      victim = it;
      break;
    }
    if (victim == entries_.end() || e.refresh_at < victim->second.refresh_at) victim = it;
  }
  if (victim == entries_.end()) return false;
  bytes_ -= victim->second.token.size();
  entries_.erase(victim);
  return true;
}

absl::StatusOr<std::string> TokenCache::Get(const std::string& key, const Fetcher& fetch,
                                            const std::atomic<bool>* cancelled) {
  absl::MutexLock lock(&mu_);
  if (entries_.size() >= capacity_ && entries_.find(key) == entries_.end())
    (void)EvictLocked(nullptr);
  Entry& e = entries_[key];
  ++e.users;
  struct Release {
    Entry& e;
    ~Release() { --e.users; }
  } release{e};
  while (true) {
    if (!e.token.empty() && clock_->Now() < e.refresh_at) return e.token;
    if (!e.fetching) break;
    std::pair<Entry*, uint64_t> waiting(&e, e.generation);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::pair<Entry*, uint64_t>* p) { return p->first->generation != p->second; },
            &waiting),
        absl::Milliseconds(100));
    if (e.generation == waiting.second) {
      if (cancelled != nullptr && cancelled->load()) return absl::CancelledError("cancelled");
      continue;  // still fetching
    }
    // Waiters share the outcome of the fetch they waited for, success or not.
    if (!e.last_error.ok()) return e.last_error;
  }
  e.fetching = true;
  ++fetches_;
  mu_.Unlock();
  absl::StatusOr<BearerToken> got = fetch();
  absl::Time now = clock_->Now();
  mu_.Lock();
  e.fetching = false;
  ++e.generation;
  if (!got.ok()) {
    // A fetch stopped by its own caller's cancel says nothing about the token
    // service: the waiters fetch again themselves.
    e.last_error = absl::IsCancelled(got.status()) ? absl::OkStatus() : got.status();
    return got.status();
  }
  e.last_error = absl::OkStatus();
  SetTokenLocked(e, got->value);
  // Over the byte bound: drop other tokens, due-for-refresh first.
  while (bytes_ > max_bytes_ && EvictLocked(&e)) {
  }
  absl::Duration margin = std::min(absl::Seconds(30), got->lifetime / 5);
  e.refresh_at = now + got->lifetime - margin;
  return e.token;
}

void TokenCache::Invalidate(const std::string& key, const std::string& token) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.token == token) {
    SetTokenLocked(it->second, std::string());
    it->second.refresh_at = absl::InfinitePast();
  }
}

size_t TokenCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

int64_t TokenCache::fetches() const {
  absl::MutexLock lock(&mu_);
  return fetches_;
}

}  // namespace regd
