// The default, human-readable output of results: aligned "key: value" lines
// and indented lists. Pure functions; thread-safe.
#ifndef REGD_CLI_TEXT_OUTPUT_H_
#define REGD_CLI_TEXT_OUTPUT_H_

#include <string>
#include <utility>
#include <vector>

#include "regd/v1/registry.pb.h"

namespace regdctl {

using Fields = std::vector<std::pair<std::string, std::string>>;

// "key:   value" lines, the values aligned.
std::string FieldLines(const Fields& fields);
// A descriptor's fields (digest, media type, size, platform, annotations).
Fields DescriptorFields(const regd::v1::Descriptor& d);
// "linux/arm64/v8"
std::string PlatformText(const std::string& os, const std::string& arch,
                         const std::string& variant);
// A map as indented "key=value" lines, sorted by key.
std::string MapLines(const google::protobuf::Map<std::string, std::string>& m);

std::string ManifestResultText(const regd::v1::ManifestResult& r);
std::string ImageText(const regd::v1::Image& image);
std::string DescriptorText(const regd::v1::Descriptor& d);

}  // namespace regdctl

#endif  // REGD_CLI_TEXT_OUTPUT_H_
