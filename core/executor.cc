#include "core/executor.h"

#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"

namespace regd {

Executor::~Executor() { (void)Drain(absl::InfiniteFuture()); }

absl::Status Executor::Submit(std::function<void()> fn, std::function<void()> reply) {
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("regd is shutting down");
    if (running_ >= max_tasks_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("regd is running its maximum of ", max_tasks_, " calls; try again later"));
    }
    ++running_;
    ++alive_;
  }
  try {
    std::thread([this, fn = std::move(fn), reply = std::move(reply)] {
      fn();
      {
        absl::MutexLock lock(&mu_);
        --running_;
      }
      if (reply) reply();
      absl::MutexLock lock(&mu_);
      --alive_;
    }).detach();
  } catch (const std::system_error&) {
    absl::MutexLock lock(&mu_);
    --running_;
    --alive_;
    return absl::ResourceExhaustedError("cannot start a worker thread");
  }
  return absl::OkStatus();
}

bool Executor::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return alive_ == 0; };
  mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
  return alive_ == 0;
}

int Executor::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

}  // namespace regd
