#include "core/executor.h"

#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace regd {

Executor::~Executor() {
  (void)Drain(absl::InfiniteFuture());
  JoinExited();
}

absl::Status Executor::Submit(std::function<void()> fn, std::function<void()> reply) {
  JoinExited();
  absl::MutexLock lock(&mu_);
  if (draining_) return absl::UnavailableError("regd is shutting down");
  if (running_ >= max_tasks_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("regd is running its maximum of ", max_tasks_, " calls; try again later"));
  }
  // Every queued task has a worker: an idle one (each takes one task), one
  // that is sending its last call's reply and comes back at once (a caller's
  // next call usually arrives just then), or a new one.
  if (idle_ + finishing_ <= static_cast<int>(queue_.size())) {
    const int id = next_id_++;
    try {
      workers_.emplace(id, std::thread([this, id] { WorkerLoop(id); }));
    } catch (const std::system_error&) {
      workers_.erase(id);
      return absl::ResourceExhaustedError("cannot start a worker thread");
    }
  }
  ++running_;
  ++busy_;
  queue_.push_back(Task{std::move(fn), std::move(reply)});
  return absl::OkStatus();
}

void Executor::WorkerLoop(int id) {
  mu_.Lock();
  while (true) {
    ++idle_;
    auto has_work = [this]()
                        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || draining_; };
    const bool woke = mu_.AwaitWithTimeout(absl::Condition(&has_work), idle_timeout_);
    --idle_;
    if (queue_.empty()) {
      // Idle too long, or draining: exit (the thread is joined by someone else).
      if (woke && !draining_) continue;
      break;
    }
    Task task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    task.fn();
    task.fn = nullptr;  // its captures go before the slot is released
    {
      absl::MutexLock relock(&mu_);
      --running_;
      ++finishing_;
    }
    if (task.reply) task.reply();
    task.reply = nullptr;
    mu_.Lock();
    --finishing_;
    --busy_;
    if (idle_ >= max_idle_ && queue_.empty()) break;  // enough idle workers already
  }
  auto self = workers_.find(id);
  if (self != workers_.end()) {
    exited_.push_back(std::move(self->second));
    workers_.erase(self);
  }
  mu_.Unlock();
}

void Executor::JoinExited() {
  std::vector<std::thread> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(exited_);
  }
  for (std::thread& t : done) {
    if (t.joinable()) t.join();
  }
}

bool Executor::Drain(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_ == 0; };
    mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
    if (busy_ != 0) return false;
  }
  // No task left: every worker is idle or exiting; wake and join them all.
  std::vector<std::thread> all;
  {
    absl::MutexLock lock(&mu_);
    auto gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return workers_.empty(); };
    mu_.Await(absl::Condition(&gone));
    all.swap(exited_);
  }
  for (std::thread& t : all) {
    if (t.joinable()) t.join();
  }
  return true;
}

int Executor::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

int Executor::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(workers_.size());
}

}  // namespace regd
