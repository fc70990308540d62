#include "cli/text_output.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/progress.h"

namespace regdctl {

std::string FieldLines(const Fields& fields) {
  size_t width = 0;
  for (const auto& [k, v] : fields) width = std::max(width, k.size());
  std::string out;
  for (const auto& [k, v] : fields) {
    std::string key = absl::StrCat(k, ":");
    key.resize(width + 2, ' ');
    // One value, one line: a newline from the server cannot start a fake field.
    absl::StrAppend(&out, key, TerminalSafe(v, /*keep_newlines=*/false), "\n");
  }
  return out;
}

std::string PlatformText(const std::string& os, const std::string& arch,
                         const std::string& variant) {
  if (os.empty() && arch.empty()) return "-";
  std::string p = absl::StrCat(os, "/", arch);
  if (!variant.empty()) absl::StrAppend(&p, "/", variant);
  return p;
}

std::string MapLines(const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  std::string out;
  for (const auto& [k, v] : sorted) {
    absl::StrAppend(&out, "  ", TerminalSafe(k, false), "=", TerminalSafe(v, false), "\n");
  }
  return out;
}

Fields DescriptorFields(const regd::v1::Descriptor& d) {
  Fields f = {{"digest", d.digest()},
              {"media type", d.media_type()},
              {"size", absl::StrCat(d.size(), " (", HumanBytes(d.size()), ")")}};
  if (d.has_platform()) {
    f.emplace_back("platform", PlatformText(d.platform().os(), d.platform().architecture(),
                                            d.platform().variant()));
  }
  return f;
}

std::string DescriptorText(const regd::v1::Descriptor& d) {
  std::string out = FieldLines(DescriptorFields(d));
  if (!d.annotations().empty()) absl::StrAppend(&out, "annotations:\n", MapLines(d.annotations()));
  return out;
}

std::string ManifestResultText(const regd::v1::ManifestResult& r) {
  Fields f = {{"digest", r.digest()},
              {"media type", r.media_type()},
              {"schema version", absl::StrCat(r.schema_version())}};
  if (!r.config().empty()) f.emplace_back("config", r.config());
  std::string out = FieldLines(f);
  if (r.manifests_size() > 0) {
    absl::StrAppend(&out, "manifests: ", r.manifests_size(), "\n");
    for (const auto& m : r.manifests()) {
      absl::StrAppend(&out, absl::StrFormat("  %s  %-16s %10s  %s\n", m.digest(),
                                            PlatformText(m.os(), m.architecture(), m.variant()),
                                            HumanBytes(m.size()), m.media_type()));
    }
  }
  if (r.layers_size() > 0) {
    absl::StrAppend(&out, "layers: ", r.layers_size(), "\n");
    for (const auto& l : r.layers()) absl::StrAppend(&out, "  ", l, "\n");
  }
  if (!r.labels().empty()) absl::StrAppend(&out, "labels:\n", MapLines(r.labels()));
  return out;
}

std::string ImageText(const regd::v1::Image& image) {
  std::string out = FieldLines(DescriptorFields(image.descriptor_()));
  const auto& c = image.config();
  absl::StrAppend(&out, absl::StrFormat("config:\n  %s  %10s  %s\n", c.digest(),
                                        HumanBytes(c.size()), c.media_type()));
  int64_t total = 0;
  absl::StrAppend(&out, "layers: ", image.layers_size(), "\n");
  for (const auto& l : image.layers()) {
    total += l.size();
    absl::StrAppend(&out, absl::StrFormat("  %s  %10s  %s\n", l.digest(), HumanBytes(l.size()),
                                          l.media_type()));
  }
  absl::StrAppend(&out, "layers total: ", HumanBytes(total), "\n");
  return out;
}

}  // namespace regdctl
