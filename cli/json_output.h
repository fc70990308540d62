// `-o json`: results as one JSON object on one line of stdout.
//
// Proto messages are written by reflection with their proto field names
// (snake_case, as the Go example's UseProtoNames), except where the C++ proto
// renamed a field and kept the contract's name as json_name ("descriptor").
// Every scalar, repeated and map field is written, set or not; a message
// field only when set; one member of a oneof, the one set. int64 fields are
// JSON numbers (sizes never come near 2^53), enums their names, bytes base64,
// google.protobuf.Duration "1.500s". Thread-compatible, no shared state.
#ifndef REGD_CLI_JSON_OUTPUT_H_
#define REGD_CLI_JSON_OUTPUT_H_

#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace regdctl {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Writes `msg` as a JSON object into `w`.
void WriteProto(const google::protobuf::Message& msg, JsonWriter* w);
// Writes a string (any bytes; invalid UTF-8 is replaced, so the output stays JSON).
void WriteString(absl::string_view s, JsonWriter* w);
// `msg` as one JSON object.
std::string ProtoToJson(const google::protobuf::Message& msg);
// Prints `json` and a newline to stdout, and flushes.
void PrintJsonLine(absl::string_view json);

}  // namespace regdctl

#endif  // REGD_CLI_JSON_OUTPUT_H_
