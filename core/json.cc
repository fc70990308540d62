#include "core/json.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/text.h"
#include "rapidjson/error/en.h"

namespace regd {

int JsonNestingDepth(absl::string_view text, int stop_above) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // whatever follows a backslash cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) deepest = depth;
        if (deepest > stop_above) return -1;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

absl::Status ParseUntrustedJson(absl::string_view text, absl::string_view what,
                                rapidjson::Document* doc, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " is larger than ", limits.max_bytes, " bytes"));
  }
  if (JsonNestingDepth(text, limits.max_depth) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " nests deeper than ", limits.max_depth, " levels"));
  }
  constexpr unsigned kFlags =
      rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
  doc->Parse<kFlags>(text.data(), text.size());
  if (doc->HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not valid JSON (offset ", doc->GetErrorOffset(), ": ",
                     rapidjson::GetParseError_En(doc->GetParseError()), ")"));
  }
  // The encoding check sees bytes, not escapes: "\udc00" (a lone surrogate)
  // still decodes to invalid UTF-8. Check every string, without recursion.
  std::vector<const rapidjson::Value*> pending{doc};
  while (!pending.empty()) {
    const rapidjson::Value* v = pending.back();
    pending.pop_back();
    if (v->IsString()) {
      if (!IsValidUtf8(absl::string_view(v->GetString(), v->GetStringLength()))) {
        return absl::InvalidArgumentError(absl::StrCat(what, " has a string that is not UTF-8"));
      }
    } else if (v->IsArray()) {
      for (const auto& item : v->GetArray()) pending.push_back(&item);
    } else if (v->IsObject()) {
      for (const auto& m : v->GetObject()) {
        if (!IsValidUtf8(absl::string_view(m.name.GetString(), m.name.GetStringLength()))) {
          return absl::InvalidArgumentError(absl::StrCat(what, " has a key that is not UTF-8"));
        }
        pending.push_back(&m.value);
      }
    }
  }
  return absl::OkStatus();
}

std::string JsonStringMember(const rapidjson::Value& obj, const char* key) {
  if (!obj.IsObject()) return "";
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace regd
