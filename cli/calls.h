// Cancelling calls in flight: on SIGINT/SIGTERM (the daemon then stops the
// upload and deletes its session), or when one of several parallel uploads
// fails and the others are no longer wanted.
//
// A CallGroup is thread-safe. A ScopedCall registers a ClientContext for the
// life of one call; declare it after the context, so it is gone first.
#ifndef REGD_CLI_CALLS_H_
#define REGD_CLI_CALLS_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/client_context.h"

namespace regdctl {

class CallGroup {
 public:
  void Add(grpc::ClientContext* ctx);  // cancels it at once if the group was cancelled
  void Remove(grpc::ClientContext* ctx);
  // Cancels every call in the group, and every call added later.
  void CancelAll();
  bool cancelled() const;

 private:
  mutable absl::Mutex mu_;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// The calls a signal cancels.
CallGroup& SignalledCalls();

// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread
// started after it: call it first in main) and starts a thread that waits for
// them: the first cancels SignalledCalls(), a second one exits at once (130).
void InstallSignalHandling();
// Whether a signal has arrived.
bool Interrupted();

class ScopedCall {
 public:
  // Registers `ctx` with SignalledCalls() and, when given, `group` too.
  explicit ScopedCall(grpc::ClientContext* ctx, CallGroup* group = nullptr);
  ~ScopedCall();
  ScopedCall(const ScopedCall&) = delete;
  ScopedCall& operator=(const ScopedCall&) = delete;

 private:
  grpc::ClientContext* ctx_;
  CallGroup* group_;
};

}  // namespace regdctl

#endif  // REGD_CLI_CALLS_H_
