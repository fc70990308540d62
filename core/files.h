// Small file helpers with Status results. Thread-compatible free functions.
#ifndef REGD_CORE_FILES_H_
#define REGD_CORE_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace regd {

// Reads a whole (small) file; RESOURCE_EXHAUSTED beyond `max_size`,
// NOT_FOUND when absent.
[[nodiscard]] absl::StatusOr<std::string> ReadSmallFile(const std::string& path,
                                                        size_t max_size = 4 << 20);

}  // namespace regd

#endif  // REGD_CORE_FILES_H_
