// regdctl's subcommands: what each one takes, and what it runs with.
//
// A Command is a plain description (name, help, options) plus the function
// that runs it. main() parses the command line into a CommandEnv and calls
// `run`, which returns the exit status for success (0, or 5 for `exists` of
// an absent image) or a Status that main() turns into an error line and an
// exit status (cli/exit_codes.h). One CommandEnv per process, main thread.
#ifndef REGD_CLI_COMMAND_H_
#define REGD_CLI_COMMAND_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "cli/connection.h"
#include "cli/progress.h"
#include "regd/v1/registry.pb.h"

namespace regdctl {

enum class OutputFormat { kText, kJson };

class CommandEnv {
 public:
  CommandEnv(const ParsedArgs& args, OutputFormat output, ProgressMode progress)
      : args_(args), output_(output), progress_(progress) {}

  const ParsedArgs& args() const { return args_; }
  bool json() const { return output_ == OutputFormat::kJson; }
  ProgressMode progress_mode() const { return progress_; }
  // A progress display on stderr in the chosen mode.
  std::unique_ptr<ProgressDisplay> NewDisplay() const;

  // Opens the connection (once), with the call credentials for `registry`
  // (the registry the command's reference names; "" when it does not parse).
  [[nodiscard]] absl::StatusOr<Connection*> Connect(absl::string_view registry);

  // The RetryConfig from --max-attempts and --retry-delay (zero: the daemon's defaults).
  [[nodiscard]] absl::StatusOr<regd::v1::RetryConfig> Retry() const;
  // Whether --max-attempts or --retry-delay was given. ReadBlob and PullImage
  // apply their own policy (short delays) only when the request has no retry.
  bool RetryGiven() const;

 private:
  const ParsedArgs& args_;
  const OutputFormat output_;
  const ProgressMode progress_;
  std::unique_ptr<Connection> connection_;
};

struct Command {
  std::string name;
  std::string synopsis;  // "inspect REF [--platform os/arch[/variant]]"
  std::string summary;   // one line, for the command list
  std::string details;   // for `regdctl CMD --help`
  std::vector<OptionSpec> options;
  size_t min_positionals = 0;
  size_t max_positionals = 0;
  std::function<absl::StatusOr<int>(CommandEnv&)> run;
};

// The options every command takes (connection, output, progress).
const std::vector<OptionSpec>& GlobalOptions();
// --max-attempts and --retry-delay, for the commands that transfer blobs;
// `daemon_delay` is the first delay regd uses when neither is given.
std::vector<OptionSpec> RetryOptions(absl::string_view daemon_delay = "2s");

// `a` followed by `b`.
std::vector<OptionSpec> With(std::vector<OptionSpec> a, const std::vector<OptionSpec>& b);

// Defined in read_commands.cc and write_commands.cc.
std::vector<Command> ReadCommands();
std::vector<Command> WriteCommands();

// Writes `text` to stdout and flushes.
// `text` with control bytes and C1 controls shown escaped (\xNN, \u00NN),
// so that nothing a server sends can drive the terminal.
std::string TerminalSafe(absl::string_view text, bool keep_newlines);
void PrintText(absl::string_view text);

}  // namespace regdctl

#endif  // REGD_CLI_COMMAND_H_
