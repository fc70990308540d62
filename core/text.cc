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

// Names whose values are secrets: an identifier ending in one of these
// ("x_password", "client_secret", "X-Registry-Auth", "private-token").
constexpr absl::string_view kSecretSuffixes[] = {
    "authorization", "token",       "password",  "passwd", "secret",  "auth",
    "credential",    "credentials", "signature", "apikey", "api_key", "api-key",
};

bool IdentChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

bool EndsWithSecretName(absl::string_view ident) {
  for (absl::string_view suffix : kSecretSuffixes) {
    if (absl::EndsWithIgnoreCase(ident, suffix)) return true;
  }
  return false;
}

// Skips spaces and tabs from `i`.
size_t SkipBlanks(absl::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return i;
}

// At s[i] a scheme word ("Bearer", "Basic") followed by blanks (or "%20"):
// the index of what follows, else npos.
size_t AfterScheme(absl::string_view s, size_t i) {
  for (absl::string_view scheme : {"bearer", "basic"}) {
    if (!StartsWithNoCase(s, i, scheme)) continue;
    size_t j = i + scheme.size();
    if (j < s.size() && (s[j] == ' ' || s[j] == '\t')) return SkipBlanks(s, j);
    if (StartsWithNoCase(s, j, "%20")) return j + 3;
  }
  return absl::string_view::npos;
}

// After a secret name at s[i..]: optional closing quote, blanks, ':' or '='
// (or "%3A"/"%3D"), blanks. The value's start, or npos when none follows.
size_t ValueStart(absl::string_view s, size_t i) {
  if (i < s.size() && (s[i] == '"' || s[i] == '\'')) ++i;
  i = SkipBlanks(s, i);
  if (i < s.size() && (s[i] == ':' || s[i] == '=')) {
    ++i;
  } else if (StartsWithNoCase(s, i, "%3a") || StartsWithNoCase(s, i, "%3d")) {
    i += 3;
  } else {
    return absl::string_view::npos;
  }
  return SkipBlanks(s, i);
}

// The end of the value starting at s[i]: up to the closing quote for a
// quoted value, else up to a delimiter.
size_t ValueEnd(absl::string_view s, size_t i) {
  if (i < s.size() && (s[i] == '"' || s[i] == '\'')) {
    const char quote = s[i];
    size_t j = i + 1;
    while (j < s.size() && s[j] != quote && s[j] != '\n') {
      if (s[j] == '\\') ++j;
      ++j;
    }
    return std::min(j + 1, s.size());
  }
  size_t after_scheme = AfterScheme(s, i);
  if (after_scheme != absl::string_view::npos) i = after_scheme;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '&' || c == ',' || c == ';' || c == '}' || c == ' ' ||
        c == '\t' || c == '\n' || c == '\r') {
      break;
    }
    ++i;
  }
  return i;
}

// A long run that is not a digest's hex (64 or 128 lower-case hex digits).
bool LooksLikeSecretRun(absl::string_view run) {
  bool hex = true;
  for (char c : run)
    hex = hex && (absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'));
  if (hex) return run.size() >= 32 && run.size() != 64 && run.size() != 128;
  return run.size() >= 40;
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
    const bool boundary = i == 0 || !IdentChar(s[i - 1]);
    // "Bearer xyz" / "Basic xyz" anywhere.
    size_t after = boundary ? AfterScheme(s, i) : absl::string_view::npos;
    if (after != absl::string_view::npos) {
      size_t e = after;
      while (e < s.size() && TokenChar(s[e])) ++e;
      if (e > after) {
        out.append(s.data() + i, after - i);
        out.append(kRedacted);
        i = e;
        continue;
      }
    }
    if (boundary && IdentChar(s[i])) {
      size_t e = i;
      while (e < s.size() && IdentChar(s[e])) ++e;
      absl::string_view ident = s.substr(i, e - i);
      size_t v = EndsWithSecretName(ident) ? ValueStart(s, e) : absl::string_view::npos;
      if (v != absl::string_view::npos && v < s.size()) {
        size_t end = ValueEnd(s, v);
        const bool quoted = s[v] == '"' || s[v] == '\'';
        out.append(s.data() + i, v - i);
        if (quoted) out.push_back(s[v]);
        out.append(kRedacted);
        if (quoted && end > v + 1 && s[end - 1] == s[v]) out.push_back(s[v]);
        i = end;
        continue;
      }
    }
    // Long token-looking runs (JWTs, keys), but not digests.
    if (RunChar(s[i]) && (i == 0 || !RunChar(s[i - 1]))) {
      size_t e = i;
      while (e < s.size() && RunChar(s[e])) ++e;
      absl::string_view run = s.substr(i, e - i);
      if (LooksLikeSecretRun(run)) {
        out.append(kRedacted);
        i = e;
        continue;
      }
      // Not a secret as a whole: copy up to the next place a name could start.
      size_t stop = i + 1;
      while (stop < e && IdentChar(s[stop - 1]) && IdentChar(s[stop])) ++stop;
      out.append(s.data() + i, stop - i);
      i = stop;
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
