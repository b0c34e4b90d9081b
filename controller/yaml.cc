#include "controller/yaml.h"

#include <yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace kipvs::controller {

namespace {

// libyaml's parser and its current event, released on every path out.
class YamlParser {
 public:
  explicit YamlParser(std::string_view text) {
    ok_ = yaml_parser_initialize(&parser_) != 0;
    if (ok_) {
      yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    }
  }
  ~YamlParser() {
    dropEvent();
    if (ok_) yaml_parser_delete(&parser_);
  }
  YamlParser(const YamlParser&) = delete;
  YamlParser& operator=(const YamlParser&) = delete;

  bool initialized() const { return ok_; }
  // The next event into event(); false on a YAML error (see problem()).
  bool next() {
    dropEvent();
    hasEvent_ = yaml_parser_parse(&parser_, &event_) != 0;
    return hasEvent_;
  }
  const yaml_event_t& event() const { return event_; }
  const yaml_parser_t& parser() const { return parser_; }

 private:
  void dropEvent() {
    if (hasEvent_) yaml_event_delete(&event_);
    hasEvent_ = false;
  }
  yaml_parser_t parser_{};
  yaml_event_t event_{};
  bool ok_ = false;
  bool hasEvent_ = false;
};

Status yamlError(std::string_view source, const yaml_mark_t& mark, const std::string& what) {
  return Status::error(Code::kParse, std::string(source) + ": invalid YAML at line " + std::to_string(mark.line + 1) +
                                         ", column " + std::to_string(mark.column + 1) + ": " + what);
}

bool isOneOf(std::string_view s, std::initializer_list<std::string_view> options) {
  for (std::string_view o : options) {
    if (s == o) return true;
  }
  return false;
}

// A plain scalar that means null.
bool isYamlNull(std::string_view v) { return isOneOf(v, {"", "~", "null", "Null", "NULL"}); }

// go-yaml v2 reads a plain scalar as a number only when it starts with a
// sign, a digit or '.' (its resolve table: "_1" is a string); one that starts
// with '.' goes to strconv.ParseFloat as written, which refuses '_'.
bool numberLike(std::string_view s) {
  if (s.empty()) return false;
  if (s[0] == '.') return s.find('_') == std::string_view::npos;
  return s[0] == '+' || s[0] == '-' || (s[0] >= '0' && s[0] <= '9');
}

// s without its '_' separators: go-yaml drops them all before it reads the
// number ("0_" is 0, "1e_-5" is 1e-5).
std::string withoutUnderscores(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c != '_') out += c;
  }
  return out;
}

// An integer as go-yaml v2 reads one (Go's strconv.ParseInt(s, 0, 64) once the
// '_' are gone): decimal, 0x hex, 0b binary, 0o or 0-prefixed octal, an
// optional sign.
std::optional<int64_t> yamlInt(std::string_view in) {
  const std::string all = withoutUnderscores(in);
  std::string_view s = all;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
    base = 2;
    s.remove_prefix(2);
  } else if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
    base = 8;
    s.remove_prefix(2);
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    bool ok = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                         : c >= '0' && c < static_cast<char>('0' + std::min(base, 10));
    if (!ok) return std::nullopt;
  }
  errno = 0;
  char* end = nullptr;
  // s is a suffix of `all`, so it ends in a NUL.
  unsigned long long v = std::strtoull(s.data(), &end, base);
  if (errno == ERANGE || *end != '\0') return std::nullopt;
  if (negative) {
    if (v > static_cast<unsigned long long>(INT64_MAX) + 1) return std::nullopt;
    return v == static_cast<unsigned long long>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<int64_t>(v);
  }
  if (v > static_cast<unsigned long long>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(v);
}

// A float in YAML 1.1's decimal form, '_' dropped first (no .inf/.nan: JSON
// has no such numbers).
std::optional<double> yamlFloat(std::string_view in) {
  const std::string t = withoutUnderscores(in);
  bool digit = false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digit = true;
    } else if (!(c == '.' || c == 'e' || c == 'E' || ((c == '-' || c == '+') && (i == 0 || t[i - 1] == 'e' || t[i - 1] == 'E')))) {
      return std::nullopt;
    }
  }
  if (!digit) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// kubectl's YAML reader (sigs.k8s.io/yaml) hands a float to Go's JSON
// encoder, which writes one with an integral value without a fraction:
// `port: 80.0` and `port: 8e1` reach the API as 80, an integer.
void writeFloat(Writer& w, double f) {
  if (std::trunc(f) == f && std::fabs(f) < 9.2e18) {
    w.Int64(static_cast<int64_t>(f));
  } else {
    w.Double(f);
  }
}

// One scalar as JSON. Quoted and block scalars are strings; plain ones are
// resolved; explicit standard tags are honoured.
Status writeScalar(const yaml_event_t& e, Writer& w, std::string_view source) {
  const auto& sc = e.data.scalar;
  std::string_view v(reinterpret_cast<const char*>(sc.value), sc.length);
  std::string_view tag = sc.tag ? reinterpret_cast<const char*>(sc.tag) : "";
  const bool plain = sc.style == YAML_PLAIN_SCALAR_STYLE && sc.plain_implicit;
  auto asBool = [&]() -> std::optional<bool> {
    if (isOneOf(v, {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"})) return true;
    if (isOneOf(v, {"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"})) return false;
    return std::nullopt;
  };
  if (!tag.empty() && tag != "!") {
    constexpr std::string_view kStd = "tag:yaml.org,2002:";
    std::string_view t = tag.substr(0, kStd.size()) == kStd ? tag.substr(kStd.size()) : std::string_view();
    if (t == "str") {
      w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()), true);
      return Status::ok();
    }
    if (t == "null" && isYamlNull(v)) {
      w.Null();
      return Status::ok();
    }
    if (t == "bool") {
      if (auto b = asBool()) {
        w.Bool(*b);
        return Status::ok();
      }
    }
    if (t == "int" && numberLike(v)) {
      if (auto i = yamlInt(v)) {
        w.Int64(*i);
        return Status::ok();
      }
    }
    if (t == "float" && numberLike(v)) {
      if (auto f = yamlFloat(v)) {
        writeFloat(w, *f);
        return Status::ok();
      }
    }
    return yamlError(source, e.start_mark,
                     "tag " + std::string(tag) + (t.empty() ? " is not supported" : " does not fit \"" + std::string(v) + "\""));
  }
  if (plain) {
    if (isYamlNull(v)) {
      w.Null();
      return Status::ok();
    }
    if (auto b = asBool()) {
      w.Bool(*b);
      return Status::ok();
    }
    if (numberLike(v)) {
      if (auto i = yamlInt(v)) {
        w.Int64(*i);
        return Status::ok();
      }
      if (auto f = yamlFloat(v)) {
        writeFloat(w, *f);
        return Status::ok();
      }
    }
  }
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()), true);
  return Status::ok();
}

}  // namespace

StatusOr<std::vector<YamlDocument>> yamlToJson(std::string_view text, std::string_view source) {
  YamlParser p(text);
  if (!p.initialized()) return Status::error(Code::kIo, "cannot start the YAML parser");
  std::vector<YamlDocument> docs;
  int index = 0;
  // The document being written.
  rapidjson::StringBuffer buf;
  Writer w(buf);
  std::vector<bool> isMapping, wantKey;  // per open collection: a mapping? waiting for a key?
  bool nullRoot = false;
  int line = 0;
  for (;;) {
    if (!p.next()) {
      const yaml_parser_t& ps = p.parser();
      std::string what = ps.problem ? ps.problem : "malformed input";
      if (ps.context) what = std::string(ps.context) + ": " + what;
      return yamlError(source, ps.problem_mark, what);
    }
    const yaml_event_t& e = p.event();
    switch (e.type) {
      case YAML_STREAM_START_EVENT:
      case YAML_NO_EVENT:
        break;
      case YAML_STREAM_END_EVENT:
        return docs;
      case YAML_DOCUMENT_START_EVENT:
        ++index;
        line = static_cast<int>(e.start_mark.line) + 1;
        buf.Clear();
        w.Reset(buf);
        wantKey.clear();
        isMapping.clear();
        nullRoot = false;
        break;
      case YAML_DOCUMENT_END_EVENT:
        if (!nullRoot) docs.push_back({index, line, std::string(buf.GetString(), buf.GetSize())});
        break;
      case YAML_ALIAS_EVENT:
        return yamlError(source, e.start_mark,
                         "aliases (*" + std::string(reinterpret_cast<const char*>(e.data.alias.anchor)) +
                             ") are not supported");
      case YAML_SCALAR_EVENT: {
        if (!isMapping.empty() && isMapping.back() && wantKey.back()) {
          const auto& sc = e.data.scalar;
          w.Key(reinterpret_cast<const char*>(sc.value), static_cast<rapidjson::SizeType>(sc.length), true);
          wantKey.back() = false;
          break;
        }
        if (isMapping.empty()) {
          const auto& sc = e.data.scalar;
          // An empty document reads as one null scalar: skip it, as kubectl does.
          std::string_view v(reinterpret_cast<const char*>(sc.value), sc.length);
          if (sc.style == YAML_PLAIN_SCALAR_STYLE && isYamlNull(v) && !sc.tag) {
            nullRoot = true;
            break;
          }
        }
        KIPVS_RETURN_IF_ERROR(writeScalar(e, w, source));
        if (!isMapping.empty() && isMapping.back()) wantKey.back() = true;
        break;
      }
      case YAML_MAPPING_START_EVENT:
      case YAML_SEQUENCE_START_EVENT: {
        if (!isMapping.empty() && isMapping.back() && wantKey.back()) {
          return yamlError(source, e.start_mark, "a key that is a mapping or a sequence is not supported");
        }
        const bool mapping = e.type == YAML_MAPPING_START_EVENT;
        mapping ? w.StartObject() : w.StartArray();
        isMapping.push_back(mapping);
        wantKey.push_back(mapping);
        break;
      }
      case YAML_MAPPING_END_EVENT:
      case YAML_SEQUENCE_END_EVENT:
        e.type == YAML_MAPPING_END_EVENT ? w.EndObject() : w.EndArray();
        isMapping.pop_back();
        wantKey.pop_back();
        if (!isMapping.empty() && isMapping.back()) wantKey.back() = true;
        break;
    }
  }
}

bool isYamlInput(std::string_view path, std::string_view text) {
  auto named = [&](std::string_view suffix) {
    return path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
  };
  // A UTF-8 byte order mark is not content (the JSON parser skips it too).
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c != '{' && c != '[' && !named(".json");
  }
  return named(".yaml") || named(".yml");  // blank: "no YAML documents", else the JSON parser's error
}

}  // namespace kipvs::controller
