#include "controller/yaml.h"

#include <yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <rapidjson/document.h>
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

using Value = rapidjson::Value;
using Alloc = rapidjson::MemoryPoolAllocator<>;

// Where writeScalar puts its value: the Writer calls it understands, making a
// DOM value.
struct ValueSink {
  Alloc& alloc;
  Value out;
  void Null() { out.SetNull(); }
  void Bool(bool b) { out.SetBool(b); }
  void Int64(int64_t i) { out.SetInt64(i); }
  void Double(double d) { out.SetDouble(d); }
  void String(const char* s, rapidjson::SizeType n, bool) { out.SetString(s, n, alloc); }
};

// kubectl's YAML reader (sigs.k8s.io/yaml) hands a float to Go's JSON
// encoder, which writes one with an integral value without a fraction:
// `port: 80.0` and `port: 8e1` reach the API as 80, an integer.
void writeFloat(ValueSink& w, double f) {
  if (std::trunc(f) == f && std::fabs(f) < 9.2e18) {
    w.Int64(static_cast<int64_t>(f));
  } else {
    w.Double(f);
  }
}

// One scalar as JSON. Quoted and block scalars are strings; plain ones are
// resolved; explicit standard tags are honoured.
Status writeScalar(const yaml_event_t& e, ValueSink& w, std::string_view source) {
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

// Values an alias may add beyond those written out: past both this and as
// many as the document spells out, aliases are refused ("billion laughs": a
// few lines of nested aliases that expand to gigabytes).
constexpr size_t kAliasAllowance = 100000;
// A mapping this large gets an index of its keys (a repeated key replaces the
// earlier one, as in go-yaml: looking each one up by a scan would be
// quadratic).
constexpr rapidjson::SizeType kIndexedMapping = 32;
constexpr size_t kMaxDepth = 10000;

bool isMergeKey(const yaml_event_t& e) {
  const auto& sc = e.data.scalar;
  if (sc.length != 2 || std::memcmp(sc.value, "<<", 2) != 0) return false;
  if (sc.tag) return std::string_view(reinterpret_cast<const char*>(sc.tag)) == "tag:yaml.org,2002:merge";
  return sc.style == YAML_PLAIN_SCALAR_STYLE && sc.plain_implicit;
}

// One YAML document as a DOM, from libyaml's events. Anchors, aliases and
// merge keys (`<<: *defaults`) as go-yaml v2 reads them: an alias is a copy
// of its anchor's node; a merge sets the merged mapping's keys in place (a
// sequence of them from last to first, so the first wins), and a later key
// replaces a merged one. A key written twice in one mapping stays twice, for
// the JSON reader to judge (a field kipvs reads, given twice, fails its
// object, as kubectl's strict reading refuses it).
class DocumentBuilder {
 public:
  DocumentBuilder(std::string_view source, Alloc& alloc) : source_(source), alloc_(alloc) {}

  // A scalar, collection start or end, or alias event.
  Status add(const yaml_event_t& e) {
    switch (e.type) {
      case YAML_SCALAR_EVENT:
        return scalar(e);
      case YAML_ALIAS_EVENT:
        return alias(e);
      case YAML_MAPPING_START_EVENT:
      case YAML_SEQUENCE_START_EVENT:
        return start(e);
      case YAML_MAPPING_END_EVENT:
      case YAML_SEQUENCE_END_EVENT:
        return end();
      default:
        return Status::ok();
    }
  }
  // The document's root; absent for an empty (null) document.
  std::optional<Value>& root() { return root_; }

 private:
  struct Frame {
    Value value;
    bool mapping = false;
    bool haveKey = false;  // a mapping's key waits for its value
    bool mergeKey = false;  // ... and it is `<<`
    Value key;
    std::string anchor;
    yaml_mark_t mark{};
    size_t directAtStart = 0, expandedAtStart = 0;
    std::unordered_map<std::string, rapidjson::SizeType> index;  // key -> member, once large
    std::unordered_set<std::string> fromMerge;  // keys a merge set, which a key written later may replace
  };
  struct Anchor {
    Value value;
    size_t nodes = 0;
  };

  Status error(const yaml_mark_t& mark, const std::string& what) const { return yamlError(source_, mark, what); }

  static std::string anchorOf(const yaml_char_t* a) { return a ? reinterpret_cast<const char*>(a) : ""; }

  Status scalar(const yaml_event_t& e) {
    ++direct_;
    const auto& sc = e.data.scalar;
    if (!stack_.empty() && stack_.back().mapping && !stack_.back().haveKey) {
      Frame& f = stack_.back();
      f.key.SetString(reinterpret_cast<const char*>(sc.value), static_cast<rapidjson::SizeType>(sc.length), alloc_);
      f.mergeKey = isMergeKey(e);
      f.haveKey = true;
      if (sc.anchor) anchors_[anchorOf(sc.anchor)] = Anchor{Value(f.key, alloc_), 1};
      return Status::ok();
    }
    if (stack_.empty()) {
      // An empty document reads as one null scalar: skip it, as kubectl does.
      std::string_view v(reinterpret_cast<const char*>(sc.value), sc.length);
      if (sc.style == YAML_PLAIN_SCALAR_STYLE && isYamlNull(v) && !sc.tag) return Status::ok();
    }
    ValueSink sink{alloc_, Value()};
    KIPVS_RETURN_IF_ERROR(writeScalar(e, sink, source_));
    return place(std::move(sink.out), anchorOf(sc.anchor), 1, e.start_mark);
  }

  Status alias(const yaml_event_t& e) {
    const std::string name = anchorOf(e.data.alias.anchor);
    auto it = anchors_.find(name);
    if (it == anchors_.end()) return error(e.start_mark, "unknown anchor *" + name);
    expanded_ += it->second.nodes;
    if (expanded_ > std::max(kAliasAllowance, direct_)) {
      return error(e.start_mark, "aliases expand to more values than the document holds (*" + name + ")");
    }
    if (!stack_.empty() && stack_.back().mapping && !stack_.back().haveKey) {
      Frame& f = stack_.back();
      if (!it->second.value.IsString()) return error(e.start_mark, "an alias used as a key must name a string (*" + name + ")");
      f.key.CopyFrom(it->second.value, alloc_);
      f.mergeKey = false;
      f.haveKey = true;
      return Status::ok();
    }
    return place(Value(it->second.value, alloc_), "", 0, e.start_mark);
  }

  Status start(const yaml_event_t& e) {
    ++direct_;
    if (!stack_.empty() && stack_.back().mapping && !stack_.back().haveKey) {
      return error(e.start_mark, "a key that is a mapping or a sequence is not supported");
    }
    // The JSON reader's limit; copying and reading the DOM recurse.
    if (stack_.size() >= kMaxDepth) return error(e.start_mark, "nesting deeper than 10000 levels");
    Frame f;
    f.mapping = e.type == YAML_MAPPING_START_EVENT;
    f.mapping ? f.value.SetObject() : f.value.SetArray();
    f.anchor = anchorOf(f.mapping ? e.data.mapping_start.anchor : e.data.sequence_start.anchor);
    f.mark = e.start_mark;
    f.directAtStart = direct_;
    f.expandedAtStart = expanded_;
    stack_.push_back(std::move(f));
    return Status::ok();
  }

  Status end() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    const size_t nodes = 1 + (direct_ - f.directAtStart) + (expanded_ - f.expandedAtStart);
    return place(std::move(f.value), f.anchor, nodes, f.mark);
  }

  // A finished node: into its sequence, under its key, or the root.
  Status place(Value&& v, const std::string& anchor, size_t nodes, const yaml_mark_t& mark) {
    if (!anchor.empty()) anchors_[anchor] = Anchor{Value(v, alloc_), nodes};
    if (stack_.empty()) {
      root_.emplace(std::move(v));
      return Status::ok();
    }
    Frame& f = stack_.back();
    if (!f.mapping) {
      f.value.PushBack(v, alloc_);
      return Status::ok();
    }
    f.haveKey = false;
    if (!f.mergeKey) {
      set(f, f.key, v, false);
      return Status::ok();
    }
    f.mergeKey = false;
    auto mergeOne = [&](Value& m) {
      for (auto it = m.MemberBegin(); it != m.MemberEnd(); ++it) set(f, it->name, it->value, true);
    };
    if (v.IsObject()) {
      mergeOne(v);
      return Status::ok();
    }
    if (v.IsArray()) {
      for (const auto& m : v.GetArray()) {
        if (!m.IsObject()) return error(mark, "a merge (<<) wants a mapping or a sequence of mappings");
      }
      for (rapidjson::SizeType i = v.Size(); i-- > 0;) mergeOne(v[i]);
      return Status::ok();
    }
    return error(mark, "a merge (<<) wants a mapping or a sequence of mappings");
  }

  // key = value in f's mapping; both are moved from. A merge (`<<`) replaces
  // what is there, as go-yaml v2 does, and a key written out replaces what a
  // merge set. A key written out twice is kept twice: the JSON reader fails
  // the object when it reads that field, as it does a JSON key given twice.
  void set(Frame& f, Value& key, Value& value, bool merged) {
    Value& obj = f.value;
    // The member to replace, if any.
    Value* slot = nullptr;
    if (!f.index.empty()) {
      auto it = f.index.find(std::string(key.GetString(), key.GetStringLength()));
      if (it != f.index.end()) slot = &obj.MemberBegin()[it->second].value;
    } else if (auto it = obj.FindMember(key); it != obj.MemberEnd()) {
      slot = &it->value;
    }
    if (slot) {
      std::string name(key.GetString(), key.GetStringLength());
      if (merged) {
        f.fromMerge.insert(std::move(name));
        *slot = value;
        return;
      }
      if (f.fromMerge.erase(name) != 0) {
        *slot = value;
        return;
      }
    } else if (merged) {
      f.fromMerge.emplace(key.GetString(), key.GetStringLength());
    }
    if (!f.index.empty()) f.index.try_emplace(std::string(key.GetString(), key.GetStringLength()), obj.MemberCount());
    obj.AddMember(key, value, alloc_);
    if (f.index.empty() && obj.MemberCount() >= kIndexedMapping) {
      rapidjson::SizeType i = 0;
      for (auto m = obj.MemberBegin(); m != obj.MemberEnd(); ++m, ++i) {
        f.index.emplace(std::string(m->name.GetString(), m->name.GetStringLength()), i);  // the first of a name
      }
    }
  }

  std::string_view source_;
  Alloc& alloc_;
  std::vector<Frame> stack_;
  std::unordered_map<std::string, Anchor> anchors_;
  std::optional<Value> root_;
  size_t direct_ = 0;    // values the document spells out
  size_t expanded_ = 0;  // values its aliases copied
};

}  // namespace

Status forEachYamlDocument(std::string_view text, std::string_view source, const YamlDocumentFn& each) {
  YamlParser p(text);
  if (!p.initialized()) return Status::error(Code::kIo, "cannot start the YAML parser");
  int index = 0;
  int line = 0;
  // The document being read: its values live in the allocator.
  std::optional<Alloc> alloc;
  std::optional<DocumentBuilder> doc;
  for (;;) {
    if (!p.next()) {
      const yaml_parser_t& ps = p.parser();
      std::string what = ps.problem ? ps.problem : "malformed input";
      if (ps.context) what = std::string(ps.context) + ": " + what;
      if (ps.error == YAML_READER_ERROR) {
        // The reader (bytes that are not UTF-8, control characters) sets
        // no mark, only the byte offset: the line and column come from it.
        const size_t offset = std::min(ps.problem_offset, text.size());
        const std::string_view before = text.substr(0, offset);
        const size_t lineStart = before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1;
        yaml_mark_t mark{};
        mark.line = static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
        mark.column = offset - lineStart;
        return yamlError(source, mark, what + " (byte " + std::to_string(offset) + ")");
      }
      return yamlError(source, ps.problem_mark, what);
    }
    const yaml_event_t& e = p.event();
    switch (e.type) {
      case YAML_STREAM_START_EVENT:
      case YAML_NO_EVENT:
        break;
      case YAML_STREAM_END_EVENT:
        return Status::ok();
      case YAML_DOCUMENT_START_EVENT:
        ++index;
        line = static_cast<int>(e.start_mark.line) + 1;
        doc.reset();
        alloc.emplace();
        doc.emplace(source, *alloc);
        break;
      case YAML_DOCUMENT_END_EVENT:
        if (doc && doc->root()) KIPVS_RETURN_IF_ERROR(each(index, line, *doc->root()));
        doc.reset();
        alloc.reset();
        break;
      default:
        if (doc) KIPVS_RETURN_IF_ERROR(doc->add(e));
        break;
    }
  }
}

StatusOr<std::vector<YamlDocument>> yamlToJson(std::string_view text, std::string_view source) {
  std::vector<YamlDocument> docs;
  Status s = forEachYamlDocument(text, source, [&](int index, int line, const Value& root) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    root.Accept(w);
    docs.push_back({index, line, std::string(buf.GetString(), buf.GetSize())});
    return Status::ok();
  });
  if (!s.isOk()) return s;
  return docs;
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
