// regdctl: a command-line client for regd, for people (progress bars) and
// scripts (-o json, exit statuses). See `regdctl --help`.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/calls.h"
#include "cli/command.h"
#include "cli/exit_codes.h"
#include "grpc/support/log.h"
#include "regd_version.h"

namespace regdctl {
namespace {

constexpr const char* kIntro =
    "regdctl: a command-line client for regd, the OCI/Docker registry daemon.\n\n"
    "Usage: regdctl [OPTIONS] COMMAND ARGS... [OPTIONS]\n"
    "       regdctl COMMAND --help\n";

constexpr const char* kOutputHelp =
    "Output: results go to stdout as text, or with -o json as one JSON object on one\n"
    "line. Progress goes to stderr: on a terminal, live bars (one line per blob: bytes,\n"
    "percent, rate, ETA, retry notices) redrawn at most 10 times a second; otherwise\n"
    "plain lines (a blob's progress at most once a second, every retry and outcome).\n"
    "Both end with a summary: blobs by outcome, bytes, time, rate, retries.\n";

constexpr const char* kExamples =
    "Examples:\n"
    "  regdctl inspect 127.0.0.1:5000/demo/hello:latest\n"
    "  regdctl exists 127.0.0.1:5000/demo/hello:nope || echo absent\n"
    "  regdctl push 127.0.0.1:5000/app:1 --config config.json --layer layer.tar.gz --upload\n"
    "  regdctl -o json push registry.example.com/team/app:1 --layout /srv/build/oci\n"
    "  regdctl pull 127.0.0.1:5000/demo/hello:latest --layout /srv/regd/oci  # the daemon's disk\n"
    "  regdctl read-blob 127.0.0.1:5000/demo/hello sha256:... -o blob --resume\n"
    "  regdctl --registry-auth-from-docker-config inspect ghcr.io/org/app:1 --platform "
    "linux/arm64\n"
    "  regdctl --addr unix:/run/regd.sock health\n";

constexpr size_t kOptionColumn = 26;

std::string OptionLines(const std::vector<OptionSpec>& specs) {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const OptionSpec& s : specs) {
    std::string left = s.short_name != 0
                           ? absl::StrCat("-", std::string(1, s.short_name), ", --", s.name)
                           : absl::StrCat("    --", s.name);
    if (!s.metavar.empty()) absl::StrAppend(&left, " ", s.metavar);
    width = std::max(width, left.size());
    rows.emplace_back(left, s.help);
  }
  width = std::min(width, kOptionColumn);
  std::string out;
  for (auto& [left, help] : rows) {
    if (left.size() > width) {  // a long option: its help on the next line
      absl::StrAppend(&out, "  ", left, "\n", std::string(width + 4, ' '), help, "\n");
      continue;
    }
    left.resize(width + 2, ' ');
    absl::StrAppend(&out, "  ", left, help, "\n");
  }
  return out;
}

std::string MainHelp(const std::vector<Command>& commands) {
  std::string out = absl::StrCat(kIntro, "\nCommands:\n");
  for (const Command& c : commands) {
    std::string name = c.name;
    name.resize(12, ' ');
    absl::StrAppend(&out, "  ", name, c.summary, "\n");
  }
  absl::StrAppend(&out, "\nOptions (before or after the command):\n", OptionLines(GlobalOptions()),
                  "\n", kOutputHelp, "\n", ExitCodeHelp(), "\n", kExamples);
  return out;
}

std::string CommandHelp(const Command& c) {
  std::string out =
      absl::StrCat("Usage: regdctl ", c.synopsis, "\n\n", c.summary, ".\n\n", c.details, "\n");
  if (!c.options.empty()) absl::StrAppend(&out, "\nOptions:\n", OptionLines(c.options));
  absl::StrAppend(&out,
                  "\nGlobal options: see regdctl --help (--addr, TLS, --token, registry\n"
                  "credentials, -o json, --progress, --timeout).\n");
  return out;
}

void PrintError(const absl::Status& s, const std::string& command) {
  std::string message = TerminalSafe(s.message(), /*keep_newlines=*/false);
  if (IsUsageError(s)) {
    std::string hint =
        command.empty() ? "regdctl --help" : absl::StrCat("regdctl ", command, " --help");
    std::fprintf(stderr, "regdctl: usage: %s (see '%s')\n", message.c_str(), hint.c_str());
  } else {
    std::fprintf(stderr, "regdctl: %s: %s\n", CodeName(s.code()).c_str(), message.c_str());
  }
}

ProgressMode ProgressModeFrom(const ParsedArgs& args, absl::Status* error) {
  std::string mode = args.Has("quiet") ? "none" : args.Value("progress", "auto");
  if (mode == "none") return ProgressMode::kNone;
  if (mode == "plain") return ProgressMode::kPlain;
  if (mode == "tty") return ProgressMode::kTerminal;
  if (mode != "auto") *error = UsageError("--progress is auto, tty, plain or none");
  const char* term = std::getenv("TERM");
  bool dumb = term != nullptr && std::string(term) == "dumb";
  return isatty(STDERR_FILENO) && !dumb ? ProgressMode::kTerminal : ProgressMode::kPlain;
}

const Command* FindByName(const std::vector<Command>& commands, const std::string& name) {
  for (const Command& c : commands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// Everything after the command has been found: options, help, the run.
int RunCommand(const Command& cmd, const std::vector<std::string>& rest, ParsedArgs& parsed) {
  std::vector<OptionSpec> specs = cmd.options;  // first: its -o beats the global one
  specs.insert(specs.end(), GlobalOptions().begin(), GlobalOptions().end());
  absl::Status s = ParseArgs(specs, rest, &parsed);
  if (s.ok() && parsed.Has("help")) {
    std::fputs(CommandHelp(cmd).c_str(), stdout);
    return 0;
  }
  size_t n = parsed.positionals().size();
  if (s.ok() && (n < cmd.min_positionals || n > cmd.max_positionals)) {
    s = UsageError(absl::StrCat("wrong number of arguments: regdctl ", cmd.synopsis));
  }
  std::string format = parsed.Value("output", "text");
  if (s.ok() && format != "text" && format != "json") s = UsageError("--output is text or json");
  ProgressMode progress = ProgressModeFrom(parsed, &s);
  if (!s.ok()) {
    PrintError(s, cmd.name);
    return kExitUsage;
  }
  CommandEnv env(parsed, format == "json" ? OutputFormat::kJson : OutputFormat::kText, progress);
  absl::StatusOr<int> result = cmd.run(env);
  if (result.ok()) return *result;
  if (Interrupted()) {
    PrintError(absl::CancelledError("interrupted"), cmd.name);
    return kExitInterrupted;
  }
  PrintError(result.status(), cmd.name);
  return ExitCodeFor(result.status());
}

void DropGrpcLog(gpr_log_func_args*) {}

int Main(int argc, char** argv) {
  InstallSignalHandling();
  if (std::getenv("REGDCTL_GRPC_LOG") == nullptr) gpr_set_log_function(DropGrpcLog);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<Command> commands = ReadCommands();
  for (Command& c : WriteCommands()) commands.push_back(std::move(c));

  size_t at = FindCommand(GlobalOptions(), args);
  ParsedArgs parsed;
  absl::Status s = ParseArgs(GlobalOptions(),
                             std::vector<std::string>(args.begin(), args.begin() + at), &parsed);
  if (s.ok() && parsed.Has("version")) {
    std::printf("regdctl %s (%s)\n", REGD_VERSION, REGD_COMMIT);
    return 0;
  }
  if (s.ok() && at == args.size()) {
    if (parsed.Has("help")) {
      std::fputs(MainHelp(commands).c_str(), stdout);
      return 0;
    }
    s = UsageError("no command");
  }
  if (!s.ok()) {
    PrintError(s, "");
    return kExitUsage;
  }
  std::string name = args[at];
  std::vector<std::string> rest(args.begin() + at + 1, args.end());
  if (name == "help") {
    const Command* c = rest.empty() ? nullptr : FindByName(commands, rest[0]);
    std::fputs(c != nullptr ? CommandHelp(*c).c_str() : MainHelp(commands).c_str(), stdout);
    return 0;
  }
  const Command* cmd = FindByName(commands, name);
  if (cmd == nullptr) {
    PrintError(UsageError(absl::StrCat("unknown command \"", name, "\"")), "");
    return kExitUsage;
  }
  return RunCommand(*cmd, rest, parsed);
}

}  // namespace
}  // namespace regdctl

int main(int argc, char** argv) {
  int code = regdctl::Main(argc, argv);
  std::fflush(stdout);
  std::fflush(stderr);
  return code;
}
