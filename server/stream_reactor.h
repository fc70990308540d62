// StreamReactor<Msg>: a ServerWriteReactor that engine threads feed.
//
// Engine threads call Push() (never blocks; progress messages are coalesced),
// PushBlocking() (waits for room: back-pressure for ReadBlob's data), and
// Complete() exactly once with the final status. The reactor keeps one write in
// flight, sends queued messages in order, then calls Finish exactly once, after
// Complete() and after the queue drains (or at once when the client is gone).
//
// Coalescing: `classify` gives each message a key (the blob it is about) and
// says whether it is a progress message. A progress message replaces the newest
// queued, not-yet-sent message with the same key when that one is a progress
// message too; so the queue holds at most one pending progress per key, and a
// progress is never reordered around a retry or result for the same blob.
//
// Lifetime: gRPC owns the reactor; OnDone deletes it. Engine threads may touch
// it only until they call Complete(). OnCancel sets the cancel flag that the
// engine polls; it never blocks.
#ifndef REGD_SERVER_STREAM_REACTOR_H_
#define REGD_SERVER_STREAM_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/http/http.h"
#include "server/status_util.h"

namespace regd {

// `Base` is the gRPC reactor it extends: a ServerWriteReactor<Msg>, or a
// ServerBidiReactor<Request, Msg> whose reads the subclass adds.
template <typename Msg, typename Base = grpc::ServerWriteReactor<Msg>>
class StreamReactor : public Base {
 public:
  struct Class {
    std::string key;
    bool progress = false;
  };
  using ClassifyFn = std::function<Class(const Msg&)>;

  explicit StreamReactor(ClassifyFn classify = nullptr, size_t max_blocking_queue = 2)
      : classify_(std::move(classify)),
        max_blocking_queue_(max_blocking_queue),
        cancelled_(NewCancelFlag()) {}

  const CancelFlag& cancelled() const { return cancelled_; }

  // Queues `msg` without blocking.
  void Push(Msg msg) {
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      if (client_gone_ || completed_) return;
      Class c = classify_ ? classify_(msg) : Class{};
      if (!Coalesce(c, msg)) queue_.push_back(Entry{std::move(c), std::move(msg)});
      start = TakeNextLocked();
    }
    if (start) this->StartWrite(&current_);
  }

  // Queues `msg` once the queue has room; false when the client is gone, or
  // has read nothing for `stalled` (a reader that stopped reading must not
  // hold a worker, a tenant slot and a registry connection forever). A full
  // queue is refilled only once it has drained to half (or less): the
  // producer wakes once per several writes, not once per write.
  bool PushBlocking(Msg msg, absl::Duration stalled = absl::Minutes(2)) {
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      const size_t low_water = max_blocking_queue_ / 2;
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return client_gone_ || queue_.size() < max_blocking_queue_;
      };
      auto drained = [this, low_water]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return client_gone_ || queue_.size() <= low_water;
      };
      if (!room() && !mu_.AwaitWithTimeout(absl::Condition(&drained), stalled)) {
        cancelled_->store(true);
        return false;
      }
      if (client_gone_) return false;
      queue_.push_back(Entry{Class{}, std::move(msg)});
      start = TakeNextLocked();
    }
    if (start) this->StartWrite(&current_);
    return true;
  }

  // Waits until every queued message was written (or the client is gone);
  // false when it is gone, or read nothing for `stalled` (then the call is
  // cancelled). Lets a producer keep its budget until its bytes are out.
  bool WaitDrained(absl::Duration stalled = absl::Minutes(2)) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return client_gone_ || (queue_.empty() && !writing_);
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), stalled)) {
      cancelled_->store(true);
      return false;
    }
    return !client_gone_;
  }

  // The engine's single terminal call.
  void Complete(const absl::Status& status) {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      completed_ = true;
      final_status_ = status;
      finish = ReadyToFinishLocked();
    }
    if (finish) this->Finish(ToGrpcStatus(status));
  }

  // grpc::ServerWriteReactor:
  void OnWriteDone(bool ok) override {
    bool start = false;
    bool finish = false;
    absl::Status final_status;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        client_gone_ = true;
        queue_.clear();
        cancelled_->store(true);
      }
      start = !client_gone_ && TakeNextLocked();
      finish = !start && ReadyToFinishLocked();
      final_status = final_status_;
    }
    if (start) this->StartWrite(&current_);
    if (finish) this->Finish(ToGrpcStatus(final_status));
  }
  void OnCancel() override {
    cancelled_->store(true);
    absl::MutexLock lock(&mu_);
    client_gone_ = true;
    queue_.clear();
  }
  // Whether the caller is gone (cancelled, or a write failed).
  bool client_gone() {
    absl::MutexLock lock(&mu_);
    return client_gone_;
  }
  void OnDone() override { delete this; }

 private:
  struct Entry {
    Class cls;
    Msg msg;
  };

  bool Coalesce(const Class& c, Msg& msg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!c.progress) return false;
    for (auto it = queue_.rbegin(); it != queue_.rend(); ++it) {
      if (it->cls.key != c.key) continue;
      if (!it->cls.progress) return false;
      it->msg = std::move(msg);
      return true;
    }
    return false;
  }

  // Moves the next queued message into current_; true when a write should start.
  bool TakeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || queue_.empty()) return false;
    current_ = std::move(queue_.front().msg);
    queue_.pop_front();
    writing_ = true;
    return true;
  }

  bool ReadyToFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !completed_ || writing_ || (!queue_.empty() && !client_gone_)) return false;
    finished_ = true;
    return true;
  }

  const ClassifyFn classify_;
  const size_t max_blocking_queue_;
  const CancelFlag cancelled_;
  absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  Msg current_;  // the message being written; untouched until OnWriteDone
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace regd

#endif  // REGD_SERVER_STREAM_REACTOR_H_
