// RegistrySlots: a counting semaphore per registry that caps concurrent blob
// uploads to it across every call (a gateway's many tenants share one limit).
//
// Thread-safe. Slot is an RAII holder that gives its slot back on destruction.
#ifndef REGD_CORE_UPLOAD_REGISTRY_SLOTS_H_
#define REGD_CORE_UPLOAD_REGISTRY_SLOTS_H_

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/http/http.h"

namespace regd {

class RegistrySlots {
 public:
  // `limit_for` gives a registry's cap (called once per registry).
  explicit RegistrySlots(std::function<int(const std::string&)> limit_for)
      : limit_for_(std::move(limit_for)) {}

  class Slot {
   public:
    Slot(RegistrySlots* owner, std::string registry)
        : owner_(owner), registry_(std::move(registry)) {}
    Slot(Slot&& o) noexcept : owner_(o.owner_), registry_(std::move(o.registry_)) {
      o.owner_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (owner_ != nullptr) owner_->Release(registry_);
    }

   private:
    RegistrySlots* owner_;
    std::string registry_;
  };

  // Waits for a free slot; CANCELLED when `cancelled` is set first.
  [[nodiscard]] absl::StatusOr<Slot> Acquire(const std::string& registry,
                                             const CancelFlag& cancelled);

 private:
  struct Counter {
    int limit = 1;
    int used = 0;
    int waiting = 0;  // callers queued for a slot (the entry is kept while any)
  };
  void Release(const std::string& registry);

  const std::function<int(const std::string&)> limit_for_;
  absl::Mutex mu_;
  std::map<std::string, Counter> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_REGISTRY_SLOTS_H_
