// Live progress of blob transfers on stderr.
//
// Terminal mode (stderr is a tty): one line per blob in flight (label, bar,
// bytes done/total, percent, rate, ETA, and a retry notice while one is
// pending), redrawn in place with ANSI cursor movement by a frame thread at
// most every `frame_interval` (10 frames a second). Retries, notes and the
// final line of each finished blob are printed once above the live lines, so
// they stay in the scrollback however many blobs there are.
//
// Plain mode (stderr is a file or pipe): no escapes; a blob's progress line at
// most every `plain_interval` (one a second), every retry, every outcome.
//
// Both end with a summary: blobs by outcome, bytes transferred, time, rate,
// retries. Blobs are named by an id (a digest, or a file until its digest is
// known) and shown by their label.
//
// Thread-safe: any number of threads may report events (parallel uploads).
#ifndef REGD_CLI_PROGRESS_H_
#define REGD_CLI_PROGRESS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace regdctl {

enum class ProgressMode { kNone, kPlain, kTerminal };

// Numbers for people, shared with the text output.
std::string HumanBytes(int64_t n);               // "512 B", "1.5 KiB", "12.0 MiB"
std::string HumanRate(double bytes_per_second);  // "5.2 MiB/s"
std::string HumanDuration(absl::Duration d);     // "0.4s", "12s", "1m05s", "2h03m"
// "sha256:3f1a2b4c5d6e..." -> "3f1a2b4c5d6e"; other text unchanged.
std::string ShortDigest(absl::string_view digest);

struct ProgressOptions {
  ProgressMode mode = ProgressMode::kNone;
  int fd = 2;  // where to draw (stderr)
  // Terminal: at most one frame per interval (10 a second).
  absl::Duration frame_interval = absl::Milliseconds(100);
  // Plain: one progress line per blob per interval at most.
  absl::Duration plain_interval = absl::Seconds(1);
};

class ProgressDisplay {
 public:
  explicit ProgressDisplay(ProgressOptions options);
  // Finishes (see Finish) if that was not done, and stops the frame thread.
  ~ProgressDisplay();
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  ProgressMode mode() const { return options_.mode; }

  // What a blob's line starts with (default: the short form of its id).
  void SetLabel(const std::string& id, absl::string_view label);
  // A step before the transfer ("hashing"); "" when the transfer itself runs.
  void SetPhase(const std::string& id, absl::string_view phase);
  // Bytes done of `total` (0: unknown). Going backwards (a resend) is fine.
  void Progress(const std::string& id, int64_t complete, int64_t total);
  // A failed attempt that will be retried after `delay`.
  void Retry(const std::string& id, int attempt, int max_attempts, absl::Duration delay,
             absl::string_view error);
  // The blob is done: "uploaded", "existed", "mounted", "shared", "downloaded", "read".
  void Outcome(const std::string& id, absl::string_view outcome, int64_t size);
  // The blob failed (its line says so; the command reports the error). A blob
  // that had no event yet is dropped instead: the error line says it all.
  void Failed(const std::string& id, absl::string_view why);
  // A line of its own.
  void Note(absl::string_view line);

  // Draws the last frame and prints the summary line (once; later calls do nothing).
  void Finish();

  struct Totals {
    int blobs = 0;
    std::vector<std::pair<std::string, int>> outcomes;  // in order of first appearance
    int64_t bytes_transferred = 0;  // sizes of blobs uploaded, downloaded or read
    int retries = 0;
    absl::Duration elapsed;
  };
  Totals totals() const;
  // "3 blobs (2 uploaded, 1 existed): 72.0 MiB transferred in 3.4s, 21.2 MiB/s, 1 retry"
  static std::string SummaryLine(const Totals& t);

 private:
  struct Blob {
    std::string label;
    std::string phase;
    int64_t complete = 0;
    int64_t total = 0;
    bool active = false;  // had an event (not only a label or phase)
    bool seen_progress = false;
    std::deque<std::pair<absl::Time, int64_t>> samples;  // for the rate
    std::string retry_note;                              // shown on the line until the retry is due
    absl::Time retry_due;
    std::string outcome;  // set when done
    bool failed = false;
    std::string failure;
    int64_t size = 0;
    absl::Time started;
    absl::Time finished;
    absl::Time last_plain_line;  // plain mode: when its last progress line went out
  };

  Blob& BlobFor(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string LineFor(const Blob& b, absl::Time now, bool bar) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string LabelColumn(const Blob& b) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double RateOf(const Blob& b, absl::Time now) const;
  // Plain mode: writes a line now. Terminal mode: queues it above the live lines.
  void Emit(std::string line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrawFrame(bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FrameLoop();
  void WriteOut(const std::string& bytes) const;
  Totals TotalsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ProgressOptions options_;
  const absl::Time start_;
  mutable absl::Mutex mu_;
  std::map<std::string, Blob> blobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);          // ids in order of appearance
  std::vector<std::string> pending_lines_ ABSL_GUARDED_BY(mu_);  // terminal: to print above
  std::vector<std::pair<std::string, int>> outcome_counts_ ABSL_GUARDED_BY(mu_);
  int retries_ ABSL_GUARDED_BY(mu_) = 0;
  int drawn_lines_ ABSL_GUARDED_BY(mu_) = 0;  // live lines on screen now
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::thread frames_;
};

}  // namespace regdctl

#endif  // REGD_CLI_PROGRESS_H_
