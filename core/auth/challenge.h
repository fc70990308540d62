// Parsing of WWW-Authenticate headers (RFC 7235) as registries send them.
//
// Pure functions over strings; thread-compatible.
#ifndef REGD_CORE_AUTH_CHALLENGE_H_
#define REGD_CORE_AUTH_CHALLENGE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace regd {

struct Challenge {
  std::string scheme;                         // lower-case: "basic", "bearer"
  std::map<std::string, std::string> params;  // lower-case keys: realm, service, scope

  std::string Param(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
};

// Parses one header value, which may hold several challenges:
//   Bearer realm="https://auth.io/token",service="reg",scope="a:b:pull", Basic realm="x"
// Quoted values may contain commas and backslash escapes. Malformed parts are
// skipped rather than failing the whole header.
std::vector<Challenge> ParseWwwAuthenticate(absl::string_view header);

}  // namespace regd

#endif  // REGD_CORE_AUTH_CHALLENGE_H_
