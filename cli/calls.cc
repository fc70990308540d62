#include "cli/calls.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace regdctl {
namespace {

std::atomic<bool> g_interrupted{false};

void WaitForSignals(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (g_interrupted.exchange(true)) _exit(130);  // a second signal: give up at once
    SignalledCalls().CancelAll();
  }
}

}  // namespace

void CallGroup::Add(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  calls_.insert(ctx);
  if (cancelled_) ctx->TryCancel();
}

void CallGroup::Remove(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  calls_.erase(ctx);
}

void CallGroup::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
}

bool CallGroup::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

CallGroup& SignalledCalls() {
  static CallGroup* group = new CallGroup();  // never destroyed: the signal thread outlives main
  return *group;
}

void InstallSignalHandling() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(WaitForSignals, set).detach();
}

bool Interrupted() { return g_interrupted.load(); }

ScopedCall::ScopedCall(grpc::ClientContext* ctx, CallGroup* group) : ctx_(ctx), group_(group) {
  SignalledCalls().Add(ctx_);
  if (group_ != nullptr) group_->Add(ctx_);
}

ScopedCall::~ScopedCall() {
  if (group_ != nullptr) group_->Remove(ctx_);
  SignalledCalls().Remove(ctx_);
}

}  // namespace regdctl
