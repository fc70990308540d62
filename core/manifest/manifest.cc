#include "core/manifest/manifest.h"

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/json.h"
#include "core/reference/reference.h"
#include "core/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace regd {
namespace {

using rapidjson::Value;

absl::Status Malformed(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", what, ": ", why));
}

std::string Str(const Value& obj, const char* key) {
  if (!obj.IsObject()) return "";
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::map<std::string, std::string> StringMap(const Value& obj, const char* key) {
  std::map<std::string, std::string> out;
  if (!obj.IsObject()) return out;
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || !it->value.IsObject()) return out;
  for (auto& m : it->value.GetObject()) {
    if (m.value.IsString()) out[m.name.GetString()] = m.value.GetString();
  }
  return out;
}

[[nodiscard]] absl::StatusOr<rapidjson::Document> ParseJson(absl::string_view body,
                                                            absl::string_view what) {
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = kMaxManifestBytes;
  absl::Status st = ParseUntrustedJson(body, what, &doc, limits);
  if (absl::IsResourceExhausted(st)) return st;
  if (!st.ok()) return Malformed(what, st.message());
  if (!doc.IsObject()) return Malformed(what, "not a JSON object");
  return doc;
}

[[nodiscard]] absl::StatusOr<Descriptor> ParseDescriptor(const Value& v, absl::string_view what) {
  if (!v.IsObject()) return Malformed(what, "descriptor is not an object");
  Descriptor d;
  d.media_type = Str(v, "mediaType");
  d.digest = Str(v, "digest");
  absl::Status st = ValidateDigest(d.digest);
  if (!st.ok()) return Malformed(what, st.message());
  auto size = v.FindMember("size");
  if (size == v.MemberEnd() || !size->value.IsInt64() || size->value.GetInt64() < 0) {
    return Malformed(what, "descriptor has no valid size");
  }
  d.size = size->value.GetInt64();
  d.annotations = StringMap(v, "annotations");
  auto urls = v.FindMember("urls");
  if (urls != v.MemberEnd() && urls->value.IsArray()) {
    for (auto& u : urls->value.GetArray()) {
      if (u.IsString()) d.urls.push_back(u.GetString());
    }
  }
  auto plat = v.FindMember("platform");
  if (plat != v.MemberEnd() && plat->value.IsObject()) {
    Platform p;
    p.os = Str(plat->value, "os");
    p.architecture = Str(plat->value, "architecture");
    p.variant = Str(plat->value, "variant");
    p.os_version = Str(plat->value, "os.version");
    d.platform = p;
  }
  return d;
}

// The body's mediaType, else the Content-Type's, else `fallback`.
std::string MediaTypeOf(const Value& doc, absl::string_view content_type,
                        absl::string_view fallback) {
  std::string mt = Str(doc, "mediaType");
  if (mt.empty()) mt = BareMediaType(content_type);
  if (mt.empty()) mt = std::string(fallback);
  return mt;
}

int64_t SchemaVersion(const Value& doc) {
  auto it = doc.FindMember("schemaVersion");
  return it != doc.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void WriteString(Writer& w, absl::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void WriteStringMap(Writer& w, const char* key, const std::map<std::string, std::string>& m) {
  if (m.empty()) return;
  w.Key(key);
  w.StartObject();
  for (const auto& [k, v] : m) {
    WriteString(w, k);
    WriteString(w, v);
  }
  w.EndObject();
}

void WriteDescriptor(Writer& w, const Descriptor& d) {
  w.StartObject();
  w.Key("mediaType");
  WriteString(w, d.media_type);
  w.Key("digest");
  WriteString(w, d.digest);
  w.Key("size");
  w.Int64(d.size);
  if (!d.urls.empty()) {
    w.Key("urls");
    w.StartArray();
    for (const auto& u : d.urls) WriteString(w, u);
    w.EndArray();
  }
  WriteStringMap(w, "annotations", d.annotations);
  if (d.platform.has_value()) {
    w.Key("platform");
    w.StartObject();
    w.Key("architecture");
    WriteString(w, d.platform->architecture);
    w.Key("os");
    WriteString(w, d.platform->os);
    if (!d.platform->os_version.empty()) {
      w.Key("os.version");
      WriteString(w, d.platform->os_version);
    }
    if (!d.platform->variant.empty()) {
      w.Key("variant");
      WriteString(w, d.platform->variant);
    }
    w.EndObject();
  }
  w.EndObject();
}

}  // namespace

bool IsIndexMediaType(absl::string_view mt) {
  return mt == media::kOciIndex || mt == media::kDockerList;
}
bool IsManifestMediaType(absl::string_view mt) {
  return mt == media::kOciManifest || mt == media::kDockerManifest;
}

std::string BareMediaType(absl::string_view content_type) {
  absl::string_view bare = content_type.substr(0, content_type.find(';'));
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(bare));
}

std::string Platform::String() const {
  std::string s = absl::StrCat(os, "/", architecture);
  if (!variant.empty()) absl::StrAppend(&s, "/", variant);
  return s;
}

absl::StatusOr<Platform> ParsePlatform(absl::string_view s) {
  std::vector<std::string> parts = absl::StrSplit(s, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid platform \"", s, "\": expected os/arch[/variant]"));
  }
  Platform p{parts[0], parts[1], parts.size() == 3 ? parts[2] : ""};
  return p;
}

Platform NormalisePlatform(const Platform& in) {
  Platform p = in;
  p.os = absl::AsciiStrToLower(p.os);
  if (p.os == "macos") p.os = "darwin";
  p.architecture = absl::AsciiStrToLower(p.architecture);
  p.variant = absl::AsciiStrToLower(p.variant);
  const std::string& a = p.architecture;
  if (a == "i386") {
    p.architecture = "386";
    p.variant.clear();
  } else if (a == "x86_64" || a == "x86-64" || a == "amd64") {
    p.architecture = "amd64";
    if (p.variant == "v1") p.variant.clear();
  } else if (a == "aarch64" || a == "arm64") {
    p.architecture = "arm64";
    if (p.variant == "8" || p.variant == "v8") p.variant.clear();
  } else if (a == "armhf") {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (a == "armel") {
    p.architecture = "arm";
    p.variant = "v6";
  } else if (a == "arm") {
    if (p.variant.empty() || p.variant == "7") p.variant = "v7";
    if (p.variant == "5" || p.variant == "6" || p.variant == "8") p.variant = "v" + p.variant;
  }
  return p;
}

bool PlatformMatches(const Platform& want_in, const Platform& have_in) {
  Platform want = NormalisePlatform(want_in);
  Platform have = NormalisePlatform(have_in);
  if (want.os != have.os || want.architecture != have.architecture) return false;
  // An unspecified wanted variant matches any; arm without a variant has
  // already become v7 on both sides.
  if (want_in.variant.empty() && want.architecture != "arm") return true;
  return want.variant == have.variant;
}

absl::StatusOr<ManifestKind> DetectManifestKind(absl::string_view content_type,
                                                absl::string_view body) {
  std::string ct = BareMediaType(content_type);
  if (IsIndexMediaType(ct)) return ManifestKind::kIndex;
  if (IsManifestMediaType(ct)) return ManifestKind::kManifest;
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseJson(body, "manifest"));
  std::string mt = Str(doc, "mediaType");
  if (IsIndexMediaType(mt)) return ManifestKind::kIndex;
  if (IsManifestMediaType(mt)) return ManifestKind::kManifest;
  if (doc.HasMember("manifests")) return ManifestKind::kIndex;
  if (doc.HasMember("layers") || doc.HasMember("config")) return ManifestKind::kManifest;
  if (SchemaVersion(doc) == 1) {
    return absl::FailedPreconditionError(
        "Docker schema1 manifests are not supported (deprecated); re-push as schema2 or OCI");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown manifest type \"", ct.empty() ? mt : ct, "\""));
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view body, absl::string_view content_type) {
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseJson(body, "manifest"));
  Manifest m;
  m.schema_version = SchemaVersion(doc);
  m.media_type = MediaTypeOf(doc, content_type, media::kOciManifest);
  auto cfg = doc.FindMember("config");
  if (cfg == doc.MemberEnd()) return Malformed("manifest", "no config descriptor");
  ASSIGN_OR_RETURN(m.config, ParseDescriptor(cfg->value, "manifest config"));
  auto layers = doc.FindMember("layers");
  if (layers != doc.MemberEnd()) {
    if (!layers->value.IsArray()) return Malformed("manifest", "layers is not an array");
    for (auto& l : layers->value.GetArray()) {
      ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(l, "manifest layer"));
      m.layers.push_back(std::move(d));
    }
  }
  m.annotations = StringMap(doc, "annotations");
  return m;
}

absl::StatusOr<Index> ParseIndex(absl::string_view body, absl::string_view content_type) {
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseJson(body, "index"));
  Index idx;
  idx.schema_version = SchemaVersion(doc);
  idx.media_type = MediaTypeOf(doc, content_type, media::kOciIndex);
  auto ms = doc.FindMember("manifests");
  if (ms == doc.MemberEnd() || !ms->value.IsArray()) {
    return Malformed("index", "no manifests array");
  }
  for (auto& e : ms->value.GetArray()) {
    ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(e, "index entry"));
    idx.manifests.push_back(std::move(d));
  }
  idx.annotations = StringMap(doc, "annotations");
  return idx;
}

absl::StatusOr<ImageConfigInfo> ParseImageConfig(absl::string_view body) {
  ASSIGN_OR_RETURN(rapidjson::Document doc, ParseJson(body, "image config"));
  ImageConfigInfo info;
  auto cfg = doc.FindMember("config");
  if (cfg != doc.MemberEnd()) info.labels = StringMap(cfg->value, "Labels");
  info.platform.os = Str(doc, "os");
  info.platform.architecture = Str(doc, "architecture");
  info.platform.variant = Str(doc, "variant");
  info.platform.os_version = Str(doc, "os.version");
  return info;
}

namespace {

// {"schemaVersion":2,"mediaType":…,<body>,"annotations":…} as compact JSON.
std::string SerializeTopLevel(absl::string_view media_type,
                              const std::function<void(Writer&)>& body,
                              const std::map<std::string, std::string>& annotations) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("schemaVersion");
  w.Int64(2);
  w.Key("mediaType");
  WriteString(w, media_type);
  body(w);
  WriteStringMap(w, "annotations", annotations);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

void WriteDescriptorArray(Writer& w, const char* key, const std::vector<Descriptor>& ds) {
  w.Key(key);
  w.StartArray();
  for (const Descriptor& d : ds) WriteDescriptor(w, d);
  w.EndArray();
}

}  // namespace

std::string SerializeManifest(const Manifest& m) {
  return SerializeTopLevel(
      m.media_type,
      [&m](Writer& w) {
        w.Key("config");
        WriteDescriptor(w, m.config);
        WriteDescriptorArray(w, "layers", m.layers);
      },
      m.annotations);
}

std::string SerializeIndex(const Index& idx) {
  return SerializeTopLevel(
      idx.media_type, [&idx](Writer& w) { WriteDescriptorArray(w, "manifests", idx.manifests); },
      idx.annotations);
}

std::optional<size_t> MatchIndex(const Index& idx, const Platform& want) {
  for (size_t i = 0; i < idx.manifests.size(); ++i) {
    const Descriptor& d = idx.manifests[i];
    if (d.platform.has_value() && PlatformMatches(want, *d.platform)) return i;
  }
  return std::nullopt;
}

std::optional<size_t> DefaultIndexEntry(const Index& idx) {
  if (idx.manifests.empty()) return std::nullopt;
  std::optional<size_t> amd64 = MatchIndex(idx, Platform{"linux", "amd64", "", ""});
  return amd64.has_value() ? amd64 : std::optional<size_t>(0);
}

}  // namespace regd
