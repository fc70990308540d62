// Small helpers shared by the libFuzzer targets in tests/fuzz.
//
// Each target is one .cc defining LLVMFuzzerTestOneInput. It is linked with
// libFuzzer in the clang fuzz build (-DREGD_FUZZ=ON, scripts/fuzz.sh) and with
// replay_main.cc in the normal and sanitizer builds, where ctest replays the
// seed corpus through it.
#ifndef REGD_TESTS_FUZZ_FUZZ_UTIL_H_
#define REGD_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/string_view.h"

// An invariant of the code under test: a violation is a finding, so it aborts
// (libFuzzer then saves the input as a crash).
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace regd::fuzz {

inline absl::string_view AsView(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

// Splits `in` on `sep` into exactly `parts` pieces; the last one keeps the
// rest (separators included), missing pieces are empty.
inline std::vector<absl::string_view> SplitInto(absl::string_view in, char sep, size_t parts) {
  std::vector<absl::string_view> out;
  while (out.size() + 1 < parts) {
    size_t at = in.find(sep);
    if (at == absl::string_view::npos) break;
    out.push_back(in.substr(0, at));
    in.remove_prefix(at + 1);
  }
  out.push_back(in);
  while (out.size() < parts) out.push_back(absl::string_view());
  return out;
}

// Takes the first byte of `*in` (0 when empty) as a selector.
inline uint8_t TakeByte(absl::string_view* in) {
  if (in->empty()) return 0;
  uint8_t b = static_cast<uint8_t>((*in)[0]);
  in->remove_prefix(1);
  return b;
}

}  // namespace regd::fuzz

#endif  // REGD_TESTS_FUZZ_FUZZ_UTIL_H_
