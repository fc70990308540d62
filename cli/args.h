// Command-line parsing for regdctl.
//
// GNU-style options: `--name VALUE`, `--name=VALUE`, one-letter aliases
// (`-o VALUE`, `-oVALUE`), switches without a value, options that may be
// repeated, options anywhere among the positional arguments, and `--` to end
// the options (a lone `-` is a positional argument: stdout/stdin).
//
// A ParsedArgs is a plain value filled on the main thread; not thread-safe.
// Every parse error is a usage error (UsageError below: exit status 2).
#ifndef REGD_CLI_ARGS_H_
#define REGD_CLI_ARGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace regdctl {

// One option a command accepts.
struct OptionSpec {
  std::string name;       // the long name, without "--"
  char short_name = 0;    // a one-letter alias, 0 for none
  std::string metavar;    // the value's placeholder in help ("FILE"); empty: a switch
  std::string help;       // one line
  bool repeated = false;  // may be given more than once (values kept in order)
};

// The result of parsing: option values by long name, and positionals in order.
class ParsedArgs {
 public:
  bool Has(absl::string_view name) const { return values_.count(std::string(name)) > 0; }
  // The (last) value of an option, or `fallback` when it was not given.
  std::string Value(absl::string_view name, absl::string_view fallback = "") const;
  // Every value of a repeated option, in order (empty when not given).
  std::vector<std::string> Values(absl::string_view name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  // Typed readers: the option's value parsed, or `fallback` when absent.
  // A value that does not parse is a usage error naming the option.
  [[nodiscard]] absl::StatusOr<int64_t> Int(absl::string_view name, int64_t fallback) const;
  // Byte counts: a plain number or one with a K/M/G/KiB/MiB/GiB suffix (powers of 1024).
  [[nodiscard]] absl::StatusOr<int64_t> Bytes(absl::string_view name, int64_t fallback) const;
  // Durations in absl's syntax: "2s", "500ms", "1m30s".
  [[nodiscard]] absl::StatusOr<absl::Duration> Duration(absl::string_view name,
                                                        absl::Duration fallback) const;

  void Add(const std::string& name, std::string value) {
    values_[name].push_back(std::move(value));
  }
  void AddPositional(std::string value) { positionals_.push_back(std::move(value)); }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

// Parses `args` against `specs`, adding to `out` (so that options given before
// a subcommand and after it end up in one ParsedArgs). Unknown options, a
// missing value, a value for a switch and a non-repeated option given twice
// are usage errors.
[[nodiscard]] absl::Status ParseArgs(const std::vector<OptionSpec>& specs,
                                     const std::vector<std::string>& args, ParsedArgs* out);

// Finds the subcommand: the first positional argument of `args` when parsed
// against `global_specs` (so that a global option's value is not taken for
// it). Returns its index, or args.size() when there is none. Parse errors are
// left for ParseArgs to report.
size_t FindCommand(const std::vector<OptionSpec>& global_specs,
                   const std::vector<std::string>& args);

// A usage error: INVALID_ARGUMENT marked so that main() exits 2 and says
// "usage" instead of a status code.
absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

// A platform as the user wrote it: "os/arch[/variant]".
struct PlatformSpec {
  std::string os, architecture, variant;
};
// Parses "os/arch[/variant]"; a usage error when malformed.
[[nodiscard]] absl::StatusOr<PlatformSpec> ParsePlatform(absl::string_view text);

}  // namespace regdctl

#endif  // REGD_CLI_ARGS_H_
