#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"

namespace regdctl {
namespace {

constexpr absl::Duration kRateWindow = absl::Seconds(3);
constexpr size_t kMaxLabel = 32;
constexpr int kBarWidth = 20;
constexpr int kBarMinColumns = 100;  // narrower terminals get no bar

struct TerminalSize {
  int columns = 80;
  int rows = 24;
};

TerminalSize SizeOf(int fd) {
  TerminalSize s;
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0) s.columns = ws.ws_col;
    if (ws.ws_row > 0) s.rows = ws.ws_row;
  }
  return s;
}

// Text from elsewhere (daemon errors, file names) on one line: control
// characters become spaces.
std::string OneLine(absl::string_view s) { return TerminalSafe(s, /*keep_newlines=*/false); }

// Display columns of UTF-8 text (one per code point: good enough here).
size_t Columns(absl::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// `s` cut to at most `max` columns, at a code point boundary.
std::string Fit(absl::string_view s, size_t max) {
  size_t cols = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (cols == max) return std::string(s.substr(0, i));
      ++cols;
    }
  }
  return std::string(s);
}

std::string PadRight(absl::string_view s, size_t width) {
  std::string out(s);
  size_t cols = Columns(s);
  if (cols < width) out.append(width - cols, ' ');
  return out;
}

std::string Bar(int64_t complete, int64_t total) {
  int filled =
      total > 0 ? static_cast<int>(kBarWidth * std::min<double>(1.0, double(complete) / total)) : 0;
  std::string bar = "[";
  for (int i = 0; i < kBarWidth; ++i) {
    bar += i < filled ? '=' : (i == filled ? '>' : ' ');
  }
  if (filled >= kBarWidth) bar.back() = '=';
  return bar + "]";
}

// Outcomes whose bytes this call moved (counted as transferred, shown with a rate).
bool Transferred(absl::string_view outcome) {
  return outcome == "uploaded" || outcome == "downloaded" || outcome == "read";
}

}  // namespace

std::string HumanBytes(int64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return absl::StrCat(n, " B");
  double v = static_cast<double>(n);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return v < 10 ? absl::StrFormat("%.2f %s", v, kUnits[unit])
                : absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string HumanRate(double bytes_per_second) {
  if (!(bytes_per_second >= 0) || std::isinf(bytes_per_second)) return "-- B/s";
  return HumanBytes(static_cast<int64_t>(bytes_per_second)) + "/s";
}

std::string HumanDuration(absl::Duration d) {
  if (d < absl::Seconds(10)) return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string ShortDigest(absl::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == absl::string_view::npos || colon > 10) return std::string(digest);
  return std::string(digest.substr(colon + 1, 12));
}

ProgressDisplay::ProgressDisplay(ProgressOptions options) : options_(options), start_(absl::Now()) {
  if (options_.mode == ProgressMode::kTerminal) frames_ = std::thread([this] { FrameLoop(); });
}

ProgressDisplay::~ProgressDisplay() {
  Finish();
  if (frames_.joinable()) frames_.join();
}

ProgressDisplay::Blob& ProgressDisplay::BlobFor(const std::string& id) {
  auto [it, inserted] = blobs_.try_emplace(id);
  if (inserted) {
    it->second.label = ShortDigest(id);
    it->second.started = absl::Now();
    it->second.last_plain_line = it->second.started;
    order_.push_back(id);
  }
  dirty_ = true;
  return it->second;
}

void ProgressDisplay::SetLabel(const std::string& id, absl::string_view label) {
  absl::MutexLock lock(&mu_);
  BlobFor(id).label = OneLine(label);
}

void ProgressDisplay::SetPhase(const std::string& id, absl::string_view phase) {
  absl::MutexLock lock(&mu_);
  Blob& b = BlobFor(id);
  b.phase = std::string(phase);
  b.samples.clear();
  b.complete = 0;
  b.seen_progress = false;
  b.last_plain_line = absl::Now();  // plain lines: the first one a second into the phase
  if (phase.empty()) b.started = b.last_plain_line;  // the transfer's time starts now
}

void ProgressDisplay::Progress(const std::string& id, int64_t complete, int64_t total) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  absl::Time now = absl::Now();
  Blob& b = BlobFor(id);
  b.active = true;
  if (!b.samples.empty() && complete < b.samples.back().second) b.samples.clear();  // a resend
  b.samples.emplace_back(now, complete);
  while (b.samples.size() > 2 && b.samples.front().first < now - kRateWindow) b.samples.pop_front();
  b.complete = complete;
  b.total = total;
  if (!b.retry_note.empty() && now >= b.retry_due) b.retry_note.clear();
  b.seen_progress = true;
  if (options_.mode != ProgressMode::kPlain || !b.outcome.empty()) return;
  if (now - b.last_plain_line >= options_.plain_interval) {
    b.last_plain_line = now;
    Emit(LineFor(b, now, false));
  }
}

void ProgressDisplay::Retry(const std::string& id, int attempt, int max_attempts,
                            absl::Duration delay, absl::string_view error) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  Blob& b = BlobFor(id);
  b.active = true;
  ++retries_;
  b.retry_note = absl::StrCat("retry ", attempt, "/", max_attempts, " in ", HumanDuration(delay),
                              ": ", OneLine(error));
  b.retry_due = absl::Now() + delay;
  Emit(absl::StrCat(LabelColumn(b), "  ", b.retry_note));
}

void ProgressDisplay::Outcome(const std::string& id, absl::string_view outcome, int64_t size) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  Blob& b = BlobFor(id);
  if (!b.outcome.empty()) return;  // one outcome per blob
  b.active = true;
  b.outcome = std::string(outcome);
  b.size = size;
  b.finished = absl::Now();
  b.retry_note.clear();
  b.phase.clear();
  auto it = std::find_if(outcome_counts_.begin(), outcome_counts_.end(),
                         [&](const auto& p) { return p.first == b.outcome; });
  if (it == outcome_counts_.end()) {
    outcome_counts_.emplace_back(b.outcome, 1);
  } else {
    ++it->second;
  }
  Emit(LineFor(b, b.finished, false));
}

void ProgressDisplay::Failed(const std::string& id, absl::string_view why) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    auto it = blobs_.find(id);
    if (it == blobs_.end() || !it->second.active) {  // nothing shown for it yet
      if (it != blobs_.end()) blobs_.erase(it);
      order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
      return;
    }
    if (!it->second.outcome.empty()) return;
    it->second.failed = true;
    it->second.failure = OneLine(why);
  }
  Outcome(id, "failed", 0);
}

void ProgressDisplay::Note(absl::string_view line) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  Emit(OneLine(line));
}

std::string ProgressDisplay::LabelColumn(const Blob& b) const {
  size_t width = 0;
  for (const std::string& id : order_) {
    const Blob& other = blobs_.at(id);
    if (other.outcome.empty()) width = std::max(width, Columns(other.label));
  }
  width = std::min(width, kMaxLabel);
  // Plain lines are read one at a time: no padding that changes as blobs come and go.
  if (options_.mode != ProgressMode::kTerminal) width = 0;
  return PadRight(Fit(b.label, kMaxLabel), width);
}

double ProgressDisplay::RateOf(const Blob& b, absl::Time now) const {
  if (b.samples.size() < 2) return -1;
  double seconds = absl::ToDoubleSeconds(now - b.samples.front().first);
  if (seconds < 0.2) return -1;
  return (b.samples.back().second - b.samples.front().second) / seconds;
}

std::string ProgressDisplay::LineFor(const Blob& b, absl::Time now, bool bar) const {
  std::string label = LabelColumn(b);
  if (!b.outcome.empty()) {
    if (b.failed) return absl::StrCat(label, "  failed: ", b.failure);
    absl::Duration took = b.finished - b.started;
    std::string line = absl::StrCat(label, "  ", HumanBytes(b.size), "  ", b.outcome);
    if (Transferred(b.outcome)) {
      double rate = b.size / std::max(0.001, absl::ToDoubleSeconds(took));
      absl::StrAppend(&line, " in ", HumanDuration(took), " (", HumanRate(rate), ")");
    }
    return line;
  }
  if (!b.seen_progress) {
    return absl::StrCat(label, "  ", b.phase.empty() ? "waiting" : b.phase,
                        b.retry_note.empty() ? "" : "  ", b.retry_note);
  }
  std::vector<std::string> parts = {label};
  if (!b.phase.empty()) parts.push_back(b.phase);
  if (bar && b.total > 0) parts.push_back(Bar(b.complete, b.total));
  double rate = RateOf(b, now);
  if (b.total > 0) {
    parts.push_back(absl::StrCat(HumanBytes(b.complete), " / ", HumanBytes(b.total)));
    parts.push_back(absl::StrFormat("%3d%%", static_cast<int>(100.0 * b.complete / b.total)));
  } else {
    parts.push_back(HumanBytes(b.complete));
  }
  // On a terminal the columns stay put ("--" until known); plain lines leave out the unknown.
  bool terminal = options_.mode == ProgressMode::kTerminal;
  if (rate >= 0 || terminal) parts.push_back(HumanRate(rate));
  if (b.total > 0 && rate > 0) {
    parts.push_back("ETA " + HumanDuration(absl::Seconds((b.total - b.complete) / rate)));
  } else if (b.total > 0 && terminal) {
    parts.push_back("ETA --");
  }
  if (!b.retry_note.empty() && now < b.retry_due + absl::Seconds(1)) parts.push_back(b.retry_note);
  return absl::StrJoin(parts, "  ");
}

void ProgressDisplay::Emit(std::string line) {
  dirty_ = true;
  if (options_.mode == ProgressMode::kPlain) {
    WriteOut(line + "\n");
  } else if (options_.mode == ProgressMode::kTerminal) {
    pending_lines_.push_back(std::move(line));
  }
}

void ProgressDisplay::DrawFrame(bool final) {
  TerminalSize size = SizeOf(options_.fd);
  size_t width = static_cast<size_t>(std::max(20, size.columns - 1));
  absl::Time now = absl::Now();
  std::string out;
  if (drawn_lines_ > 0) absl::StrAppend(&out, "\r\x1b[", drawn_lines_, "A");
  for (const std::string& line : pending_lines_)
    absl::StrAppend(&out, "\x1b[2K", Fit(line, width), "\n");
  pending_lines_.clear();
  std::vector<const Blob*> live;
  for (const std::string& id : order_) {
    const Blob& b = blobs_.at(id);
    if (b.active && b.outcome.empty()) live.push_back(&b);
  }
  int shown = 0;
  size_t room = static_cast<size_t>(std::max(2, size.rows - 2));
  bool bar = size.columns >= kBarMinColumns;
  for (size_t i = 0; i < live.size(); ++i) {
    std::string line = LineFor(*live[i], now, bar && !final);
    if (!final && live.size() > room && i + 1 == room) {
      line = absl::StrCat("... and ", live.size() - i, " more");
    }
    absl::StrAppend(&out, "\x1b[2K", Fit(line, width), "\n");
    if (!final) ++shown;
    if (!final && live.size() > room && i + 1 == room) break;
  }
  absl::StrAppend(&out, "\x1b[J");
  drawn_lines_ = shown;
  dirty_ = false;
  WriteOut(out);
}

void ProgressDisplay::FrameLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.frame_interval);
    if (stop_) break;
    bool live = false;
    for (const std::string& id : order_) {
      const Blob& b = blobs_.at(id);
      live = live || (b.active && b.outcome.empty());
    }
    if (dirty_ || live) DrawFrame(false);  // rates and ETAs move even without events
  }
}

void ProgressDisplay::WriteOut(const std::string& bytes) const {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(options_.fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr is gone: nothing useful to do
    off += static_cast<size_t>(n);
  }
}

void ProgressDisplay::Finish() {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  stop_ = true;
  if (options_.mode == ProgressMode::kNone) return;
  if (options_.mode == ProgressMode::kTerminal) {
    DrawFrame(true);  // what is still live stays on screen as it stands
  } else {
    absl::Time now = absl::Now();
    for (const std::string& id : order_) {
      const Blob& b = blobs_.at(id);
      if (b.active && b.outcome.empty()) WriteOut(LineFor(b, now, false) + "\n");
    }
  }
  Totals t = TotalsLocked();
  if (t.blobs > 0) WriteOut(SummaryLine(t) + "\n");
}

ProgressDisplay::Totals ProgressDisplay::TotalsLocked() const {
  Totals t;
  t.outcomes = outcome_counts_;
  int unfinished = 0;
  for (const std::string& id : order_) {
    const Blob& b = blobs_.at(id);
    if (!b.active) continue;
    ++t.blobs;
    if (Transferred(b.outcome)) t.bytes_transferred += b.size;
    unfinished += b.outcome.empty();
  }
  if (unfinished > 0) t.outcomes.emplace_back("unfinished", unfinished);
  t.retries = retries_;
  t.elapsed = absl::Now() - start_;
  return t;
}

ProgressDisplay::Totals ProgressDisplay::totals() const {
  absl::MutexLock lock(&mu_);
  return TotalsLocked();
}

std::string ProgressDisplay::SummaryLine(const Totals& t) {
  std::vector<std::string> outcomes;
  for (const auto& [name, n] : t.outcomes) outcomes.push_back(absl::StrCat(n, " ", name));
  double seconds = std::max(0.001, absl::ToDoubleSeconds(t.elapsed));
  std::string line =
      absl::StrCat(t.blobs, t.blobs == 1 ? " blob" : " blobs", " (", absl::StrJoin(outcomes, ", "),
                   "): ", HumanBytes(t.bytes_transferred), " transferred in ",
                   HumanDuration(t.elapsed), ", ", HumanRate(t.bytes_transferred / seconds));
  if (t.retries > 0)
    absl::StrAppend(&line, ", ", t.retries, t.retries == 1 ? " retry" : " retries");
  return line;
}

}  // namespace regdctl
