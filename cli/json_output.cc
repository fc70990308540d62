#include "cli/json_output.h"

#include <cstdio>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "core/text.h"
#include "google/protobuf/descriptor.h"

namespace regdctl {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string KeyOf(const FieldDescriptor* f) {
  return f->has_json_name() ? f->json_name() : f->name();
}

bool IsDuration(const Message& msg) {
  return msg.GetDescriptor()->full_name() == "google.protobuf.Duration";
}

void WriteDuration(const Message& msg, JsonWriter* w) {
  const Reflection* r = msg.GetReflection();
  const auto* d = msg.GetDescriptor();
  int64_t seconds = r->GetInt64(msg, d->FindFieldByName("seconds"));
  int32_t nanos = r->GetInt32(msg, d->FindFieldByName("nanos"));
  double total = static_cast<double>(seconds) + nanos / 1e9;
  WriteString(absl::StrFormat("%.3fs", total), w);
}

void WriteMessage(const Message& msg, JsonWriter* w);

// One value of field `f`: the singular value, or element `index` of a repeated field.
void WriteValue(const Message& msg, const FieldDescriptor* f, int index, JsonWriter* w) {
  const Reflection* r = msg.GetReflection();
  bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      w->Int(rep ? r->GetRepeatedInt32(msg, f, index) : r->GetInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      w->Int64(rep ? r->GetRepeatedInt64(msg, f, index) : r->GetInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      w->Uint(rep ? r->GetRepeatedUInt32(msg, f, index) : r->GetUInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      w->Uint64(rep ? r->GetRepeatedUInt64(msg, f, index) : r->GetUInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      w->Double(rep ? r->GetRepeatedDouble(msg, f, index) : r->GetDouble(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      w->Double(rep ? r->GetRepeatedFloat(msg, f, index) : r->GetFloat(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      w->Bool(rep ? r->GetRepeatedBool(msg, f, index) : r->GetBool(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* v = rep ? r->GetRepeatedEnum(msg, f, index) : r->GetEnum(msg, f);
      WriteString(v->name(), w);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(msg, f, index) : r->GetString(msg, f);
      WriteString(f->type() == FieldDescriptor::TYPE_BYTES ? absl::Base64Escape(s) : s, w);
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      WriteMessage(rep ? r->GetRepeatedMessage(msg, f, index) : r->GetMessage(msg, f), w);
      break;
  }
}

// A map field: repeated entries with `key` and `value`, as a JSON object.
void WriteMap(const Message& msg, const FieldDescriptor* f, JsonWriter* w) {
  const Reflection* r = msg.GetReflection();
  const FieldDescriptor* key = f->message_type()->map_key();
  const FieldDescriptor* value = f->message_type()->map_value();
  w->StartObject();
  for (int i = 0; i < r->FieldSize(msg, f); ++i) {
    const Message& entry = r->GetRepeatedMessage(msg, f, i);
    const Reflection* er = entry.GetReflection();
    // JSON keys are strings; other key types as their text, as proto3 JSON does.
    switch (key->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        WriteString(er->GetString(entry, key), w);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        WriteString(std::to_string(er->GetInt32(entry, key)), w);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        WriteString(std::to_string(er->GetInt64(entry, key)), w);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        WriteString(std::to_string(er->GetUInt32(entry, key)), w);
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        WriteString(std::to_string(er->GetUInt64(entry, key)), w);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        WriteString(er->GetBool(entry, key) ? "true" : "false", w);
        break;
      default:
        WriteString("?", w);
        break;  // proto3 allows no other key types
    }
    WriteValue(entry, value, -1, w);
  }
  w->EndObject();
}

void WriteMessage(const Message& msg, JsonWriter* w) {
  if (IsDuration(msg)) return WriteDuration(msg, w);
  const Reflection* r = msg.GetReflection();
  const auto* d = msg.GetDescriptor();
  w->StartObject();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    bool in_oneof = f->real_containing_oneof() != nullptr;
    bool singular_message = !f->is_repeated() && f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if ((in_oneof || singular_message) && !r->HasField(msg, f)) continue;
    WriteString(KeyOf(f), w);
    if (f->is_map()) {
      WriteMap(msg, f, w);
    } else if (f->is_repeated()) {
      w->StartArray();
      for (int j = 0; j < r->FieldSize(msg, f); ++j) WriteValue(msg, f, j, w);
      w->EndArray();
    } else {
      WriteValue(msg, f, -1, w);
    }
  }
  w->EndObject();
}

}  // namespace

void WriteString(absl::string_view s, JsonWriter* w) {
  std::string valid = regd::SanitizeUtf8(s);
  w->String(valid.data(), static_cast<rapidjson::SizeType>(valid.size()));
}

void WriteProto(const Message& msg, JsonWriter* w) { WriteMessage(msg, w); }

std::string ProtoToJson(const Message& msg) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  WriteProto(msg, &w);
  return std::string(buf.GetString(), buf.GetSize());
}

void PrintJsonLine(absl::string_view json) {
  std::fwrite(json.data(), 1, json.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace regdctl
