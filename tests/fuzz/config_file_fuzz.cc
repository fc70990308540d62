// Fuzzes ParseConfigFile (the --config file's JSON). Paths it names are only
// checked with access(); nothing is read or written.
#include <cstddef>
#include <cstdint>

#include "core/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<regd::RegistryConfigMap> config =
      regd::ParseConfigFile(regd::fuzz::AsView(data, size));
  if (config.ok()) {
    for (const auto& [name, rc] : *config) {
      FUZZ_CHECK(!name.empty());
      FUZZ_CHECK(rc.chunk_size >= 0);
      FUZZ_CHECK(rc.concurrency >= 0);
    }
  }
  return 0;
}
