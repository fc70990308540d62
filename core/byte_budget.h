// ByteBudget: an admission limit on bytes held in memory across all calls
// (inline blob data). A call reserves before it keeps bytes; a full budget is
// RESOURCE_EXHAUSTED at once, never a wait and never an abort.
//
// Thread-safe. Reservations return their bytes when destroyed and must not
// outlive the budget.
#ifndef REGD_CORE_BYTE_BUDGET_H_
#define REGD_CORE_BYTE_BUDGET_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace regd {

class ByteBudget {
 public:
  explicit ByteBudget(int64_t capacity) : capacity_(capacity) {}

  // Holds `bytes` of the budget until destroyed. Move-only.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& o) noexcept : budget_(o.budget_), bytes_(o.bytes_) {
      o.budget_ = nullptr;
      o.bytes_ = 0;
    }
    Reservation& operator=(Reservation&& o) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }

   private:
    friend class ByteBudget;
    Reservation(ByteBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    void Release();
    ByteBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  [[nodiscard]] absl::StatusOr<Reservation> Reserve(int64_t bytes);
  int64_t in_use() const;
  int64_t capacity() const { return capacity_; }

 private:
  const int64_t capacity_;
  mutable absl::Mutex mu_;
  int64_t in_use_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace regd

#endif  // REGD_CORE_BYTE_BUDGET_H_
