// Fuzzes the reference grammar: ParseReference, ParseRepository and
// ValidateDigest, with the round trip of a parsed reference through String().
#include <cstddef>
#include <cstdint>

#include "core/reference/reference.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using regd::fuzz::AsView;
  absl::string_view in = AsView(data, size);

  absl::StatusOr<regd::Reference> ref = regd::ParseReference(in);
  if (ref.ok()) {
    FUZZ_CHECK(!ref->tag.empty() || !ref->digest.empty());
    FUZZ_CHECK(!ref->repo.registry.empty() && !ref->repo.path.empty());
    if (!ref->digest.empty()) FUZZ_CHECK(regd::ValidateDigest(ref->digest).ok());
    FUZZ_CHECK(!ref->repo.ApiHost().empty());
    // The canonical form parses back to itself.
    const std::string canonical = ref->String();
    absl::StatusOr<regd::Reference> again = regd::ParseReference(canonical);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->String() == canonical);
    FUZZ_CHECK(regd::ParseRepository(ref->repo.String()).ok());
  }

  absl::StatusOr<regd::Repository> repo = regd::ParseRepository(in);
  if (repo.ok()) {
    FUZZ_CHECK(!repo->registry.empty() && !repo->path.empty());
    absl::StatusOr<regd::Repository> again = regd::ParseRepository(repo->String());
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->String() == repo->String());
  }

  (void)regd::ValidateDigest(in);
  return 0;
}
