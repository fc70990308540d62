#include "core/reference/reference.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"
#include "core/text.h"

namespace regd {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

absl::Status Invalid(absl::string_view input, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", ForMessage(input), "\": ", why));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsLowerHex(char c) { return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9'); }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*
// separator      := "." | "_" | "__" | "-"+
bool ValidPathComponent(absl::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !IsLowerAlnum(c[j])) ++j;
    absl::string_view sep = c.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == absl::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = j;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool ValidDomainComponent(absl::string_view c) {
  if (c.empty() || !IsAlnum(c.front()) || !IsAlnum(c.back())) return false;
  for (char ch : c) {
    if (!IsAlnum(ch) && ch != '-') return false;
  }
  return true;
}

absl::Status ValidateDomain(absl::string_view input, absl::string_view domain) {
  absl::string_view host = domain;
  size_t colon = domain.rfind(':');
  if (!domain.empty() && domain.front() == '[') {  // [IPv6]:port
    size_t close = domain.find(']');
    if (close == absl::string_view::npos) return Invalid(input, "unterminated IPv6 address");
    absl::string_view inside = domain.substr(1, close - 1);
    if (inside.empty() ||
        inside.find_first_not_of("0123456789abcdefABCDEF:.") != absl::string_view::npos) {
      return Invalid(input, "bad IPv6 address in registry");
    }
    host = domain.substr(0, close + 1);
    colon = close + 1 < domain.size() ? close + 1 : absl::string_view::npos;
    if (colon != absl::string_view::npos && domain[colon] != ':') {
      return Invalid(input, "junk after IPv6 address in registry");
    }
  } else {
    if (colon != absl::string_view::npos) host = domain.substr(0, colon);
    for (absl::string_view part : absl::StrSplit(host, '.')) {
      if (!ValidDomainComponent(part)) {
        return Invalid(input, absl::StrCat("bad registry host \"", host, "\""));
      }
    }
  }
  if (colon != absl::string_view::npos) {
    absl::string_view port = domain.substr(colon + 1);
    int port_number = 0;
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != absl::string_view::npos ||
        !absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
      return Invalid(input, absl::StrCat("bad registry port \"", port, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTagIn(absl::string_view input, absl::string_view tag) {
  if (tag.empty()) return Invalid(input, "empty tag");
  if (tag.size() > kMaxTagLength) return Invalid(input, "tag longer than 128 characters");
  auto word = [](char c) { return IsAlnum(c) || c == '_'; };
  if (!word(tag[0])) return Invalid(input, "tag must start with a letter, digit or '_'");
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') {
      return Invalid(input, absl::StrCat("tag \"", ForMessage(tag), "\" has an invalid character"));
    }
  }
  return absl::OkStatus();
}

// Splits "name" into (domain, path) the way docker does: the first component
// is a registry when it has a '.' or ':', is "localhost", or has upper case.
absl::StatusOr<Repository> SplitName(absl::string_view input, absl::string_view name) {
  if (name.empty()) return Invalid(input, "empty repository name");
  Repository repo;
  size_t slash = name.find('/');
  absl::string_view first = name.substr(0, slash);
  bool is_domain = slash != absl::string_view::npos &&
                   (first.find_first_of(".:") != absl::string_view::npos || first == "localhost" ||
                    absl::AsciiStrToLower(first) != first);
  absl::string_view path = name;
  if (is_domain) {
    RETURN_IF_ERROR(ValidateDomain(input, first));
    // Host names are case-insensitive: one spelling, so that settings,
    // upload slots, credentials and the tenant policy all see the same name.
    // Not for a bare upper-case label ("UPPER/case"): only its case makes it
    // a registry, and lower-cased it would name a Docker Hub repository.
    const std::string lower = absl::AsciiStrToLower(first);
    const bool still_a_domain =
        lower.find_first_of(".:") != std::string::npos || lower == "localhost";
    repo.registry = still_a_domain ? lower : std::string(first);
    path = name.substr(slash + 1);
    if (repo.registry == "index.docker.io" || repo.registry == kDockerHubApiHost) {
      repo.registry = std::string(kDockerHubDomain);
    }
  } else {
    repo.registry = std::string(kDockerHubDomain);
  }
  if (path.empty()) return Invalid(input, "empty repository path");
  for (absl::string_view comp : absl::StrSplit(path, '/')) {
    if (comp.empty()) return Invalid(input, "empty path component");
    if (!ValidPathComponent(comp)) {
      return Invalid(input, absl::StrCat("path component \"", comp,
                                         "\" must be lower-case letters, digits and "
                                         "single separators (. _ __ -)"));
    }
  }
  repo.path = std::string(path);
  if (repo.registry == kDockerHubDomain && repo.path.find('/') == std::string::npos) {
    repo.path = absl::StrCat("library/", repo.path);
  }
  if (repo.String().size() > kMaxNameLength) {
    return Invalid(input, "repository name longer than 255 characters");
  }
  if (!is_domain && path.size() == 64 &&
      path.find_first_not_of("0123456789abcdef") == absl::string_view::npos) {
    return Invalid(input, "a 64-character hex string is a digest, not a repository");
  }
  return repo;
}

}  // namespace

absl::Status ValidateTag(absl::string_view tag) { return ValidateTagIn(tag, tag); }

absl::Status ValidateDigest(absl::string_view digest) {
  if (digest.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", ForMessage(digest, 80), "\": too long"));
  }
  size_t colon = digest.find(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", ForMessage(digest), "\": expected algorithm:hex"));
  }
  absl::string_view algo = digest.substr(0, colon);
  absl::string_view hex = digest.substr(colon + 1);
  size_t want = algo == "sha256" ? 64 : algo == "sha512" ? 128 : 0;
  if (want == 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", ForMessage(digest),
                                                   "\": unsupported algorithm \"", ForMessage(algo),
                                                   "\""));
  }
  if (hex.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid digest \"", ForMessage(digest), "\": ", algo, " needs ", want, " hex characters"));
  }
  for (char c : hex) {
    if (!IsLowerHex(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid digest \"", ForMessage(digest), "\": not lower-case hex"));
    }
  }
  return absl::OkStatus();
}

std::string Repository::ApiHost() const {
  return registry == kDockerHubDomain ? std::string(kDockerHubApiHost) : registry;
}

std::string Reference::String() const {
  std::string out = repo.String();
  if (!tag.empty()) absl::StrAppend(&out, ":", tag);
  if (!digest.empty()) absl::StrAppend(&out, "@", digest);
  return out;
}

absl::StatusOr<Reference> ParseReference(absl::string_view input) {
  if (input.empty()) return Invalid(input, "empty reference");
  if (input.size() > 4096) return Invalid(input, "reference too long");
  for (char c : input) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return Invalid(input, "contains whitespace or control characters");
    }
  }
  Reference ref;
  absl::string_view rest = input;
  size_t at = rest.find('@');
  if (at != absl::string_view::npos) {
    absl::string_view digest = rest.substr(at + 1);
    absl::Status st = ValidateDigest(digest);
    if (!st.ok()) return Invalid(input, st.message());
    ref.digest = std::string(digest);
    rest = rest.substr(0, at);
  }
  // A tag follows the last ':' that comes after the last '/'.
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos &&
      (last_slash == absl::string_view::npos || colon > last_slash)) {
    absl::string_view tag = rest.substr(colon + 1);
    RETURN_IF_ERROR(ValidateTagIn(input, tag));
    ref.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  ASSIGN_OR_RETURN(ref.repo, SplitName(input, rest));
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

absl::StatusOr<Repository> ParseRepository(absl::string_view input) {
  if (input.size() > 4096) return Invalid(input, "repository name too long");
  if (input.find('@') != absl::string_view::npos) {
    return Invalid(input, "a repository name has no digest");
  }
  size_t last_slash = input.rfind('/');
  size_t colon = input.rfind(':');
  if (colon != absl::string_view::npos &&
      (last_slash == absl::string_view::npos || colon > last_slash)) {
    return Invalid(input, "a repository name has no tag");
  }
  return SplitName(input, input);
}

}  // namespace regd
