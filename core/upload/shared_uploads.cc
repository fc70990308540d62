#include "core/upload/shared_uploads.h"

namespace regd {

void SharedUploads::Flight::Publish(int64_t complete, int64_t total) {
  absl::MutexLock lock(&mu_);
  complete_ = complete;
  total_ = total;
  for (auto& [id, fn] : followers_) fn(complete, total);
}

SharedUploads::Ticket SharedUploads::Join(const std::string& key, const std::string& repo) {
  absl::MutexLock lock(&mu_);
  auto it = flights_.find(key);
  if (it != flights_.end()) return Ticket{it->second, false};
  auto flight = std::make_shared<Flight>(repo);
  flights_[key] = flight;
  return Ticket{flight, true};
}

void SharedUploads::Finish(const std::string& key, const std::shared_ptr<Flight>& flight,
                           absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
  }
  absl::MutexLock lock(&flight->mu_);
  flight->done_ = true;
  flight->status_ = std::move(status);
}

absl::Status SharedUploads::Wait(const std::shared_ptr<Flight>& flight,
                                 const ProgressFn& on_progress, const CancelFlag& cancelled) {
  absl::MutexLock lock(&flight->mu_);
  int id = flight->next_id_++;
  if (on_progress) {
    flight->followers_[id] = on_progress;
    if (flight->total_ > 0) on_progress(flight->complete_, flight->total_);
  }
  while (!flight->done_) {
    if (cancelled && cancelled->load()) {
      flight->followers_.erase(id);
      return absl::CancelledError("cancelled while waiting for a shared upload");
    }
    flight->mu_.AwaitWithTimeout(absl::Condition(&flight->done_), absl::Milliseconds(100));
  }
  flight->followers_.erase(id);
  return flight->status_;
}

size_t SharedUploads::in_flight() const {
  absl::MutexLock lock(&mu_);
  return flights_.size();
}

}  // namespace regd
