#include "cli/args.h"

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace regdctl {
namespace {

constexpr absl::string_view kUsagePayload = "regdctl/usage";

const OptionSpec* FindLong(const std::vector<OptionSpec>& specs, absl::string_view name) {
  for (const OptionSpec& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const OptionSpec* FindShort(const std::vector<OptionSpec>& specs, char c) {
  for (const OptionSpec& s : specs) {
    if (s.short_name != 0 && s.short_name == c) return &s;
  }
  return nullptr;
}

// How one argument looks: an option (by spec, with an inline value or not), or
// a positional.
struct Token {
  const OptionSpec* spec = nullptr;
  std::string spelled;      // as written, for messages ("--digest", "-o")
  bool has_inline = false;  // --name=VALUE or -oVALUE
  std::string inline_value;
  bool unknown = false;
};

Token Classify(const std::vector<OptionSpec>& specs, const std::string& arg) {
  Token t;
  if (absl::StartsWith(arg, "--")) {
    absl::string_view body = absl::string_view(arg).substr(2);
    size_t eq = body.find('=');
    absl::string_view name = body.substr(0, eq);
    t.spelled = absl::StrCat("--", name);
    if (eq != absl::string_view::npos) {
      t.has_inline = true;
      t.inline_value = std::string(body.substr(eq + 1));
    }
    t.spec = FindLong(specs, name);
  } else {
    t.spelled = arg.substr(0, 2);
    t.spec = FindShort(specs, arg[1]);
    if (arg.size() > 2) {
      t.has_inline = true;
      t.inline_value = arg.substr(arg[2] == '=' ? 3 : 2);
    }
  }
  t.unknown = t.spec == nullptr;
  return t;
}

bool IsOption(const std::string& arg) { return arg.size() > 1 && arg[0] == '-'; }

}  // namespace

std::string ParsedArgs::Value(absl::string_view name, absl::string_view fallback) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end() || it->second.empty()) return std::string(fallback);
  return it->second.back();
}

std::vector<std::string> ParsedArgs::Values(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<int64_t> ParsedArgs::Int(absl::string_view name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  int64_t v = 0;
  if (!absl::SimpleAtoi(Value(name), &v)) {
    return UsageError(absl::StrCat("--", name, " wants a whole number, got \"", Value(name), "\""));
  }
  return v;
}

absl::StatusOr<int64_t> ParsedArgs::Bytes(absl::string_view name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  std::string text = absl::AsciiStrToLower(Value(name));
  absl::string_view num = text;
  int64_t unit = 1;
  static constexpr struct {
    absl::string_view suffix;
    int64_t unit;
  } kUnits[] = {{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", int64_t{1} << 30},
                {"k", 1 << 10},   {"m", 1 << 20},   {"g", int64_t{1} << 30},
                {"b", 1}};
  for (const auto& u : kUnits) {
    if (absl::ConsumeSuffix(&num, u.suffix)) {
      unit = u.unit;
      break;
    }
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(num, &v) || v < 0 || v > (int64_t{1} << 62) / unit) {
    return UsageError(absl::StrCat("--", name, " wants a byte count (e.g. 1048576 or 1MiB), got \"",
                                   Value(name), "\""));
  }
  return v * unit;
}

absl::StatusOr<absl::Duration> ParsedArgs::Duration(absl::string_view name,
                                                    absl::Duration fallback) const {
  if (!Has(name)) return fallback;
  absl::Duration d;
  if (!absl::ParseDuration(Value(name), &d) || d < absl::ZeroDuration()) {
    return UsageError(
        absl::StrCat("--", name, " wants a duration (e.g. 2s, 500ms), got \"", Value(name), "\""));
  }
  return d;
}

absl::Status ParseArgs(const std::vector<OptionSpec>& specs, const std::vector<std::string>& args,
                       ParsedArgs* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      for (++i; i < args.size(); ++i) out->AddPositional(args[i]);
      break;
    }
    if (!IsOption(arg)) {
      out->AddPositional(arg);
      continue;
    }
    Token t = Classify(specs, arg);
    if (t.unknown) return UsageError(absl::StrCat("unknown option ", t.spelled));
    const OptionSpec& spec = *t.spec;
    std::string value;
    if (spec.metavar.empty()) {
      if (t.has_inline) return UsageError(absl::StrCat(t.spelled, " takes no value"));
      value = "true";
    } else if (t.has_inline) {
      value = t.inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return UsageError(absl::StrCat(t.spelled, " needs a value (", spec.metavar, ")"));
    }
    if (!spec.repeated && out->Has(spec.name)) {
      return UsageError(absl::StrCat("--", spec.name, " given more than once"));
    }
    out->Add(spec.name, std::move(value));
  }
  return absl::OkStatus();
}

size_t FindCommand(const std::vector<OptionSpec>& global_specs,
                   const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") return i + 1 < args.size() ? i + 1 : args.size();
    if (!IsOption(arg)) return i;
    Token t = Classify(global_specs, arg);
    if (!t.unknown && !t.spec->metavar.empty() && !t.has_inline) ++i;  // skip its value
  }
  return args.size();
}

absl::Status UsageError(absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kUsagePayload, absl::Cord("1"));
  return s;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

absl::StatusOr<PlatformSpec> ParsePlatform(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  bool ok = parts.size() == 2 || parts.size() == 3;
  for (const std::string& p : parts) ok = ok && !p.empty();
  if (!ok) return UsageError(absl::StrCat("a platform is os/arch[/variant], got \"", text, "\""));
  PlatformSpec p;
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

}  // namespace regdctl
