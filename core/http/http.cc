#include "core/http/http.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace regd {

std::optional<std::string> HttpResponse::Header(absl::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::Headers(absl::string_view lower_name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (k == lower_name) out.push_back(v);
  }
  return out;
}

std::string UrlOrigin(absl::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) return "";
  size_t host_end = url.find_first_of("/?#", scheme_end + 3);
  std::string origin = absl::AsciiStrToLower(url.substr(0, host_end));
  // The default port is the same origin as no port ("https://r:443" is "https://r").
  if (absl::StartsWith(origin, "https://") && absl::EndsWith(origin, ":443")) {
    origin.resize(origin.size() - 4);
  } else if (absl::StartsWith(origin, "http://") && absl::EndsWith(origin, ":80")) {
    origin.resize(origin.size() - 3);
  }
  return origin;
}

std::string ResolveUrl(absl::string_view base, absl::string_view ref) {
  if (ref.find("://") != absl::string_view::npos) return std::string(ref);
  if (absl::StartsWith(ref, "//")) {
    return absl::StrCat(base.substr(0, base.find("://") + 1), ref);
  }
  size_t scheme_end = base.find("://");
  size_t authority_end = scheme_end == absl::string_view::npos
                             ? absl::string_view::npos
                             : base.find_first_of("/?#", scheme_end + 3);
  absl::string_view origin = base.substr(0, authority_end);
  if (absl::StartsWith(ref, "/")) return absl::StrCat(origin, ref);
  // Relative path: replace everything after the last '/' of base's path.
  absl::string_view path = base.substr(origin.size());
  path = path.substr(0, path.find_first_of("?#"));
  size_t slash = path.rfind('/');
  absl::string_view dir = slash == absl::string_view::npos ? "/" : path.substr(0, slash + 1);
  return absl::StrCat(origin, dir, ref);
}

std::string UrlEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace regd
