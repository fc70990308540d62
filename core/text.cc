#include "core/text.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace regd {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
constexpr char kRedacted[] = "[redacted]";

// Length of the valid UTF-8 sequence at s[i], or 0 when there is none.
size_t Utf8SequenceAt(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool TokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '/' || c == '=' || c == '-';
}

// Characters of a long secret-looking run ('/' excluded, so paths survive).
bool RunChar(char c) { return c != '/' && TokenChar(c); }

bool StartsWithNoCase(absl::string_view s, size_t at, absl::string_view word) {
  if (at + word.size() > s.size()) return false;
  return absl::EqualsIgnoreCase(s.substr(at, word.size()), word);
}

// Keys whose values are secrets, matched case-insensitively.
constexpr absl::string_view kSecretKeys[] = {
    "authorization", "access_token", "refresh_token", "identitytoken",
    "registrytoken", "password",     "passwd",        "secret",
    "token",         "auth",         "signature",     "credential",
};

// At s[at] a secret key: the index where its value starts (after optional
// quote, spaces, ':' or '=', spaces, quote), or npos when no value follows.
size_t SecretValueStart(absl::string_view s, size_t at, size_t key_len) {
  size_t i = at + key_len;
  // The key must end here (not "tokenizer"), maybe with a closing quote.
  if (i < s.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) {
    return absl::string_view::npos;
  }
  if (i < s.size() && (s[i] == '"' || s[i] == '\'')) ++i;
  while (i < s.size() && s[i] == ' ') ++i;
  if (i >= s.size() || (s[i] != ':' && s[i] != '=')) return absl::string_view::npos;
  ++i;
  while (i < s.size() && s[i] == ' ') ++i;
  if (i < s.size() && (s[i] == '"' || s[i] == '\'')) ++i;
  return i;
}

size_t ValueEnd(absl::string_view s, size_t i, bool header_value) {
  while (i < s.size()) {
    char c = s[i];
    if (c == '"' || c == '\'' || c == '&' || c == ',' || c == '}' || c == '\n' || c == '\r') break;
    if (c == ' ' && !header_value) break;
    ++i;
  }
  return i;
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceAt(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view s) {
  if (IsValidUtf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceAt(s, i);
    if (n == 0) {
      out.append(kReplacement);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

std::string ForMessage(absl::string_view s, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  for (; i < s.size() && out.size() < max_bytes;) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = Utf8SequenceAt(s, i);
    if (n == 0) {
      out.append(kReplacement);
      ++i;
    } else if (n == 1 && (c < 0x20 || c == 0x7F)) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", c));
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  if (i < s.size()) absl::StrAppend(&out, "\xE2\x80\xA6 (", s.size(), " bytes)");
  return out;
}

std::string RedactSecrets(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    // "Bearer xyz" / "Basic xyz"
    bool done = false;
    for (absl::string_view scheme : {"bearer ", "basic "}) {
      if (StartsWithNoCase(s, i, scheme)) {
        size_t v = i + scheme.size();
        size_t e = v;
        while (e < s.size() && TokenChar(s[e])) ++e;
        if (e > v) {
          out.append(s.data() + i, scheme.size());
          out.append(kRedacted);
          i = e;
          done = true;
          break;
        }
      }
    }
    if (done) continue;
    for (absl::string_view key : kSecretKeys) {
      if (!StartsWithNoCase(s, i, key)) continue;
      size_t v = SecretValueStart(s, i, key.size());
      if (v == absl::string_view::npos) continue;
      size_t e = ValueEnd(s, v, key == "authorization");
      out.append(s.data() + i, v - i);
      out.append(kRedacted);
      i = e;
      done = true;
      break;
    }
    if (done) continue;
    // Long token-looking runs (JWTs, keys), but not digests (lower-case hex).
    if (RunChar(s[i]) && (i == 0 || !RunChar(s[i - 1]))) {
      size_t e = i;
      bool hex_only = true;
      while (e < s.size() && RunChar(s[e])) {
        const char c = s[e];
        hex_only = hex_only &&
                   (absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'));
        ++e;
      }
      if (e - i >= 40 && !hex_only) {
        out.append(kRedacted);
        i = e;
        continue;
      }
      out.append(s.data() + i, e - i);
      i = e;
      continue;
    }
    out.push_back(s[i]);
    ++i;
  }
  return out;
}

std::string ForeignText(absl::string_view s, size_t max_bytes) {
  // Redact over a bounded prefix only: the rest is cut anyway.
  return ForMessage(RedactSecrets(s.substr(0, std::min(s.size(), max_bytes * 4))), max_bytes);
}

}  // namespace regd
