// CancelFlag: how a call says "stop". A CallContext carries one per call; the
// layers below (HTTP transfers, waits, hashing) take it to stop promptly.
//
// Shared between the call's owner (who sets it: the client went away, its
// deadline passed, the server is stopping) and the work (which polls it).
#ifndef REGD_CORE_CANCEL_H_
#define REGD_CORE_CANCEL_H_

#include <atomic>
#include <memory>

namespace regd {

using CancelFlag = std::shared_ptr<std::atomic<bool>>;
inline CancelFlag NewCancelFlag() { return std::make_shared<std::atomic<bool>>(false); }

}  // namespace regd

#endif  // REGD_CORE_CANCEL_H_
