#include "core/byte_budget.h"

#include "absl/strings/str_cat.h"

namespace regd {

ByteBudget::Reservation& ByteBudget::Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    Release();
    budget_ = o.budget_;
    bytes_ = o.bytes_;
    o.budget_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void ByteBudget::Reservation::Release() {
  if (budget_ != nullptr && bytes_ > 0) {
    absl::MutexLock lock(&budget_->mu_);
    budget_->in_use_ -= bytes_;
  }
  budget_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<ByteBudget::Reservation> ByteBudget::Reserve(int64_t bytes) {
  if (bytes <= 0) return Reservation();
  absl::MutexLock lock(&mu_);
  if (bytes > capacity_ - in_use_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the budget for inline data and streamed uploads is full (", in_use_, " of ", capacity_,
        " bytes held by calls in flight, --inline_memory); "
        "retry later or send a file path"));
  }
  in_use_ += bytes;
  return Reservation(this, bytes);
}

int64_t ByteBudget::in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

}  // namespace regd
