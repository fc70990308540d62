// SharedUploads: the table of blob uploads in flight, so that concurrent
// writers of one blob to one registry send its bytes once.
//
// The first caller for a key becomes the leader and uploads; later callers
// become followers: they receive the leader's outcome (and its progress, when
// they push to the same repository). A follower whose leader failed may lead a
// new attempt itself. The WriteService's key is registry|digest|size|
// credential identity: callers share only uploads made with the very
// credentials they brought.
//
// Thread-safe. Flights are shared_ptr-owned by the table and by every
// participant; the table forgets a flight when its leader finishes.
#ifndef REGD_CORE_UPLOAD_SHARED_UPLOADS_H_
#define REGD_CORE_UPLOAD_SHARED_UPLOADS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/http/http.h"

namespace regd {

class SharedUploads {
 public:
  using ProgressFn = std::function<void(int64_t complete, int64_t total)>;

  class Flight {
   public:
    explicit Flight(std::string leader_repo) : leader_repo_(std::move(leader_repo)) {}
    // Leader: report progress to every follower (callbacks must not block).
    void Publish(int64_t complete, int64_t total);
    const std::string& leader_repo() const { return leader_repo_; }

   private:
    friend class SharedUploads;
    const std::string leader_repo_;
    absl::Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    absl::Status status_ ABSL_GUARDED_BY(mu_);
    int64_t complete_ ABSL_GUARDED_BY(mu_) = 0;
    int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
    std::map<int, ProgressFn> followers_ ABSL_GUARDED_BY(mu_);
    int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  };

  struct Ticket {
    std::shared_ptr<Flight> flight;
    bool leader = false;
  };

  // Joins the flight for `key`, or starts one with this caller as leader.
  Ticket Join(const std::string& key, const std::string& repo);

  // Leader: ends the flight with `status` and wakes the followers.
  void Finish(const std::string& key, const std::shared_ptr<Flight>& flight, absl::Status status);

  // Follower: relays progress to `on_progress` until the leader finishes, and
  // returns the leader's status (CANCELLED if `cancelled` is set first).
  [[nodiscard]] absl::Status Wait(const std::shared_ptr<Flight>& flight,
                                  const ProgressFn& on_progress, const CancelFlag& cancelled);

  // Flights in the table (for tests and metrics).
  size_t in_flight() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mu_);
};

}  // namespace regd

#endif  // REGD_CORE_UPLOAD_SHARED_UPLOADS_H_
