#include "core/upload/registry_slots.h"

namespace regd {

absl::StatusOr<RegistrySlots::Slot> RegistrySlots::Acquire(const std::string& registry,
                                                           const CancelFlag& cancelled) {
  absl::MutexLock lock(&mu_);
  auto it = counters_.find(registry);
  if (it == counters_.end()) {
    it = counters_.emplace(registry, Counter{std::max(1, limit_for_(registry)), 0}).first;
  }
  Counter* c = &it->second;
  ++c->waiting;
  while (c->used >= c->limit) {
    if (cancelled && cancelled->load()) {
      --c->waiting;
      return absl::CancelledError("cancelled while queued");
    }
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Counter* k) { return k->used < k->limit; }, c),
                         absl::Milliseconds(100));
  }
  --c->waiting;
  ++c->used;
  return Slot(this, registry);
}

void RegistrySlots::Release(const std::string& registry) {
  absl::MutexLock lock(&mu_);
  auto it = counters_.find(registry);
  if (it == counters_.end()) return;
  --it->second.used;
  // Forget an idle registry, so the map holds only registries in use.
  if (it->second.used == 0 && it->second.waiting == 0) counters_.erase(it);
}

}  // namespace regd
