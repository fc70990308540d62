// Fuzzes what regd reads from an OCI image layout: the oci-layout marker and
// index.json (ParseIndex with the OCI index media type), and the JSON layer
// under every parser (JsonNestingDepth, ParseUntrustedJson), checking that the
// flat depth scan agrees with the depth of what RapidJSON parsed, and that a
// document it accepts holds only valid UTF-8 (escapes such as "\udc00" too).
//
// Input: the oci-layout file, a NUL byte, then index.json. Without a NUL the
// whole input is index.json.
#include <climits>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/manifest/manifest.h"
#include "core/reference/reference.h"
#include "core/text.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

absl::string_view View(const rapidjson::Value& v) {
  return absl::string_view(v.GetString(), v.GetStringLength());
}

// The nesting depth of a parsed document, without recursion; checks that every
// string and key is valid UTF-8 on the way.
int DocumentDepth(const rapidjson::Value& root) {
  int deepest = 0;
  std::vector<std::pair<const rapidjson::Value*, int>> stack = {{&root, 0}};
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    if (v->IsString()) {
      FUZZ_CHECK(regd::IsValidUtf8(View(*v)));
    } else if (v->IsArray()) {
      ++depth;
      for (const rapidjson::Value& e : v->GetArray()) stack.push_back({&e, depth});
    } else if (v->IsObject()) {
      ++depth;
      for (const auto& m : v->GetObject()) {
        FUZZ_CHECK(regd::IsValidUtf8(View(m.name)));
        stack.push_back({&m.value, depth});
      }
    }
    if (depth > deepest) deepest = depth;
  }
  return deepest;
}

void CheckJsonLayer(absl::string_view text) {
  const int full = regd::JsonNestingDepth(text, INT_MAX);
  FUZZ_CHECK(full >= 0);
  for (int stop : {0, 1, 2, 16, 64}) {
    const int d = regd::JsonNestingDepth(text, stop);
    FUZZ_CHECK(d == (full > stop ? -1 : full));
  }
  regd::JsonLimits limits;
  limits.max_depth = 8;
  rapidjson::Document doc;
  absl::Status st = regd::ParseUntrustedJson(text, "index.json", &doc, limits);
  if (st.ok()) {
    FUZZ_CHECK(full <= limits.max_depth);
    // The scan is an upper bound; exact unless a NUL hides a tail from RapidJSON.
    const int parsed = DocumentDepth(doc);
    FUZZ_CHECK(parsed <= full);
    if (text.find('\0') == absl::string_view::npos) FUZZ_CHECK(parsed == full);
  } else {
    FUZZ_CHECK(
        st.code() == absl::StatusCode::kInvalidArgument ||
        (st.code() == absl::StatusCode::kResourceExhausted && text.size() > limits.max_bytes));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view in = regd::fuzz::AsView(data, size);
  absl::string_view marker;
  absl::string_view index_json = in;
  if (size_t nul = in.find('\0'); nul != absl::string_view::npos) {
    marker = in.substr(0, nul);
    index_json = in.substr(nul + 1);
  }

  rapidjson::Document layout;
  regd::JsonLimits small;
  small.max_bytes = 64 << 10;
  if (regd::ParseUntrustedJson(marker, "oci-layout", &layout, small).ok() && layout.IsObject()) {
    (void)regd::JsonStringMember(layout, "imageLayoutVersion");
  }

  CheckJsonLayer(index_json);

  absl::StatusOr<regd::Index> idx = regd::ParseIndex(index_json, regd::media::kOciIndex);
  if (idx.ok()) {
    for (const regd::Descriptor& d : idx->manifests) {
      (void)regd::ValidateDigest(d.digest);
      auto it = d.annotations.find("org.opencontainers.image.ref.name");
      if (it != d.annotations.end()) (void)regd::ParseReference(it->second);
    }
    (void)regd::DefaultIndexEntry(*idx);
  }
  return 0;
}
