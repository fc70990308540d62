#include "core/auth/challenge.h"

#include "absl/strings/ascii.h"

namespace regd {
namespace {

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~/").find(c) != absl::string_view::npos;
}

class Lexer {
 public:
  explicit Lexer(absl::string_view s) : s_(s) {}
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool AtEnd() const { return i_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[i_]; }
  void Advance() { ++i_; }
  size_t pos() const { return i_; }
  void set_pos(size_t p) { i_ = p; }

  std::string Token() {
    size_t start = i_;
    while (i_ < s_.size() && IsTokenChar(s_[i_])) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }
  // Value after '=': a quoted string (with escapes) or a token (token68 may end in '=').
  std::string Value() {
    if (Peek() != '"') {
      std::string v = Token();
      while (Peek() == '=') {
        v.push_back('=');
        Advance();
      }
      return v;
    }
    Advance();
    std::string out;
    while (!AtEnd() && Peek() != '"') {
      if (Peek() == '\\' && i_ + 1 < s_.size()) Advance();
      out.push_back(Peek());
      Advance();
    }
    if (!AtEnd()) Advance();  // closing quote
    return out;
  }

 private:
  absl::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::vector<Challenge> ParseWwwAuthenticate(absl::string_view header) {
  std::vector<Challenge> out;
  Lexer lx(header);
  while (true) {
    lx.SkipSpace();
    while (lx.Peek() == ',') {
      lx.Advance();
      lx.SkipSpace();
    }
    if (lx.AtEnd()) break;
    std::string scheme = lx.Token();
    if (scheme.empty()) {  // junk: skip one character and carry on
      lx.Advance();
      continue;
    }
    Challenge ch;
    ch.scheme = absl::AsciiStrToLower(scheme);
    // auth-params: key=value separated by commas, until a token not followed by '='.
    while (true) {
      lx.SkipSpace();
      size_t save = lx.pos();
      while (lx.Peek() == ',') {
        lx.Advance();
        lx.SkipSpace();
      }
      size_t key_start = lx.pos();
      std::string key = lx.Token();
      lx.SkipSpace();
      if (key.empty() || lx.Peek() != '=') {
        // Either the end, or the next challenge's scheme (a token not followed by '=').
        lx.set_pos(key.empty() ? lx.pos() : key_start);
        if (key.empty() && lx.pos() == save && !lx.AtEnd() && lx.Peek() != ',') lx.Advance();
        break;
      }
      lx.Advance();  // '='
      lx.SkipSpace();
      ch.params[absl::AsciiStrToLower(key)] = lx.Value();
    }
    out.push_back(std::move(ch));
  }
  return out;
}

}  // namespace regd
