// Differential fuzzer for the YAML reader (controller/yaml.h), libFuzzer.
//
// For every input:
//   crash   the input as a .yaml file through parseFile (libyaml events ->
//           a DOM -> the JSON reader's reference path): no crash, no
//           ASan/UBSan report, whatever the bytes.
//   flow    when parseJson accepts the input, the YAML path must accept it too
//           and give the same Cluster (cluster_dump.h rendering, object errors
//           included; "FILE document N (line L)" in messages read as "FILE").
//           YAML 1.2 is a superset of JSON; libyaml is YAML 1.1, and a JSON
//           text that meets one of its documented differences (see
//           yaml11Difference below) is only held to the crash property.
//   block   the JSON re-written as block-style YAML the way `kubectl get -o
//           yaml` (go-yaml v2) writes it: strings plain where go-yaml's
//           resolver reads them back as strings, else quoted; literal block
//           scalars for multi-line strings; long lines folded. Knobs (indent,
//           sequence indent, quoting, null/bool spelling, flow sub-trees,
//           CRLF, document markers, comments) from a hash of the input. Same
//           Cluster as parseJson.
//   resolve every string of the JSON that can be a plain scalar: kipvs's
//           resolution of it (yamlToJson) against go-yaml v2's (resolve.go,
//           with Go >= 1.13 strconv.ParseInt base 0, as kubectl is built).
//
// A difference aborts with both sides printed. Differences already triaged
// (yaml11Difference, knownResolveClass below; "dom-not-unicode": rapidjson
// 1.1.0 takes a lone "\udc00" escape, which no YAML text can say) are counted
// and printed once per class instead, unless KIPVS_YAML_FUZZ_STRICT=1. The
// resolve-underscore and resolve-0o-octal classes are kipvs bugs (see
// knownResolveClass); the others are YAML 1.1 / libyaml rules or harmless.
//
// Build and run: test/fuzz/yaml_build.sh.
// Env: KIPVS_FUZZ_VERBOSE=1 prints the generated YAML and the renderings.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "test/fuzz/fuzz_util.h"
#include "controller/k8s.h"
#include "controller/yaml.h"
#include "test/controller/cluster_dump.h"

using namespace kipvs::controller;
using kipvs::StatusOr;

namespace {

bool envFlag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}
bool verbose() {
  static const bool v = envFlag("KIPVS_FUZZ_VERBOSE");
  return v;
}
bool strict() {
  static const bool v = envFlag("KIPVS_YAML_FUZZ_STRICT");
  return v;
}

// "FILE document N (line L)" -> "FILE": the YAML path names the document.
std::string normalized(std::string s, const std::string& file) {
  const std::string head = file + " document ";
  for (size_t at = s.find(head); at != std::string::npos; at = s.find(head, at + file.size())) {
    size_t i = at + head.size();
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (s.compare(i, 7, " (line ") != 0) continue;
    i += 7;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i >= s.size() || s[i] != ')') continue;
    s.erase(at + file.size(), i + 1 - (at + file.size()));
  }
  return s;
}

std::string shown(std::string_view s, size_t max = 6000) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
      out += static_cast<char>(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// Triaged differences: counted (and printed once per class) unless strict.
std::map<std::string, uint64_t>& knownCounts() {
  static auto* m = new std::map<std::string, uint64_t>;  // never destroyed: printCounts reads it at exit
  return *m;
}
void reportKnown(const std::string& cls, const std::string& detail) {
  uint64_t& n = knownCounts()[cls];
  if (n++ == 0 || verbose()) std::fprintf(stderr, "[yaml_fuzz] known difference %s: %s\n", cls.c_str(), detail.c_str());
}
struct PrintCounts {
  ~PrintCounts() {
    for (const auto& [k, v] : knownCounts()) std::fprintf(stderr, "[yaml_fuzz] known %s: %llu\n", k.c_str(), (unsigned long long)v);
  }
} printCounts;

[[noreturn]] void diverge(const char* what, std::string_view input, const std::string& extraName,
                          const std::string& extra, const std::string& refName, const std::string& ref,
                          const std::string& gotName, const std::string& got) {
  std::fprintf(stderr, "\n=== DIVERGENCE (%s)\n--- input (%zu bytes)\n%s\n", what, input.size(), shown(input).c_str());
  if (!extraName.empty()) std::fprintf(stderr, "--- %s\n%s\n", extraName.c_str(), shown(extra).c_str());
  std::fprintf(stderr, "--- %s\n%s--- %s\n%s", refName.c_str(), ref.c_str(), gotName.c_str(), got.c_str());
  std::abort();
}

// --- UTF-8 and libyaml's character classes -------------------------------------

// The code point at s[i] (advancing i), or -1 for what libyaml's reader refuses
// as UTF-8 (overlong, surrogate, > 0x10FFFF, cut).
int32_t nextCodePoint(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    ++i;
    return -1;
  }
  int32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) {
    unsigned char t = static_cast<unsigned char>(s[i + k]);
    if ((t & 0xC0) != 0x80) {
      ++i;
      return -1;
    }
    v = (v << 6) | (t & 0x3F);
  }
  i += n;
  if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000)) return -1;
  if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return -1;
  return v;
}

// libyaml's reader: what it lets through (yaml_parser_update_buffer).
bool yamlReadable(int32_t v) {
  return v == 0x09 || v == 0x0A || v == 0x0D || (v >= 0x20 && v <= 0x7E) || v == 0x85 || (v >= 0xA0 && v <= 0xD7FF) ||
         (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
}
// YAML 1.1 line breaks beyond \n and \r (YAML 1.2 dropped them).
bool yaml11Break(int32_t v) { return v == 0x85 || v == 0x2028 || v == 0x2029; }

// --- flow: which valid JSON texts libyaml (YAML 1.1) does not read as JSON ----

// Why a JSON text (one parseJson accepts) is not read the same by libyaml, or
// nullopt. Each is a documented YAML 1.1 / libyaml rule:
//   invalid-utf8      YAML input is Unicode; rapidjson (no validation flag) passes bytes through
//   non-printable     raw DEL, C1 controls, U+FFFE/FFFF in a string (libyaml's reader refuses them)
//   yaml11-break      raw NEL, LS, PS in a string: line breaks in YAML 1.1, folded in a quoted scalar
//   surrogate-escape  \ud83d\ude00: YAML's \u is a code point, surrogates are refused
//   top-level-tab     a tab outside any bracket (YAML: tabs cannot start a token in block context)
//   multiline-key     a line break between a key and its ':' (implicit keys are one line)
//   long-key          more than 1024 characters from a key's '"' to its ':' (implicit key limit)
std::optional<std::string> yaml11Difference(std::string_view s) {
  struct Frame {
    bool object;
    bool wantKey;
  };
  std::vector<Frame> stack;
  size_t i = 0;
  size_t cps = 0;  // code points before s[i]
  // The open key: code-point index of its quote, whether a break followed it.
  std::optional<size_t> keyStart;
  bool keyBreak = false;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      const bool isKey = !stack.empty() && stack.back().object && stack.back().wantKey;
      const size_t startCp = cps;
      ++i;
      ++cps;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\') {
          if (i + 1 < s.size() && s[i + 1] == 'u' && i + 6 <= s.size()) {
            unsigned v = std::strtoul(std::string(s.substr(i + 2, 4)).c_str(), nullptr, 16);
            if (v >= 0xD800 && v <= 0xDFFF) return "surrogate-escape";
            i += 6;
            cps += 6;
          } else {
            i += 2;
            cps += 2;
          }
          continue;
        }
        int32_t v = nextCodePoint(s, i);
        ++cps;
        if (v < 0) return "invalid-utf8";
        if (!yamlReadable(v)) return "non-printable";
        if (yaml11Break(v)) return "yaml11-break";
      }
      ++i;  // the closing quote
      ++cps;
      if (isKey) {
        keyStart = startCp;
        keyBreak = false;
        stack.back().wantKey = false;
      }
      continue;
    }
    int32_t v = nextCodePoint(s, i);
    if (v < 0) return "invalid-utf8";
    if (!yamlReadable(v)) return "non-printable";
    switch (v) {
      case '{':
        stack.push_back({true, true});
        break;
      case '[':
        stack.push_back({false, false});
        break;
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        break;
      case ',':
        if (!stack.empty() && stack.back().object) stack.back().wantKey = true;
        break;
      case ':':
        if (keyStart) {
          if (keyBreak) return "multiline-key";
          if (cps - *keyStart > 1024) return "long-key";
          keyStart.reset();
        }
        break;
      case '\t':
        if (stack.empty()) return "top-level-tab";
        break;
      case '\n':
      case '\r':
        if (keyStart) keyBreak = true;
        break;
      default:
        break;
    }
    ++cps;
  }
  return std::nullopt;
}

// --- go-yaml v2's resolver (kubectl's YAML reader and writer) ------------------

struct Resolved {
  enum Kind { kNull, kBool, kInt, kUint, kFloat, kStr, kOther } kind = kStr;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string toString() const {
    char buf[64];
    switch (kind) {
      case kNull: return "null";
      case kBool: return b ? "bool true" : "bool false";
      case kInt: return "int " + std::to_string(i);
      case kUint: return "uint " + std::to_string(u);
      case kFloat: std::snprintf(buf, sizeof buf, "float %.17g", f); return buf;
      case kStr: return "str";
      case kOther: return "other (NaN/Inf/merge)";
    }
    return "?";
  }
};

int digitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

// Go's strconv.ParseUint(s, base, 64) (base 0: 0x/0o/0b/0 prefixes, Go >= 1.13).
std::optional<uint64_t> goParseUint(std::string_view s, int base) {
  if (s.empty()) return std::nullopt;
  if (base == 0) {
    base = 10;
    if (s[0] == '0') {
      char l = s.size() >= 3 ? static_cast<char>(s[1] | 0x20) : 0;
      if (l == 'b') {
        base = 2;
        s.remove_prefix(2);
      } else if (l == 'o') {
        base = 8;
        s.remove_prefix(2);
      } else if (l == 'x') {
        base = 16;
        s.remove_prefix(2);
      } else {
        base = 8;
        s.remove_prefix(1);
      }
    }
  }
  unsigned __int128 n = 0;
  for (char c : s) {
    int d = digitValue(c);
    if (d >= base) return std::nullopt;  // '_' is gone already (resolve strips it)
    n = n * base + d;
    if (n > UINT64_MAX) return std::nullopt;
  }
  return static_cast<uint64_t>(n);
}

// Go's strconv.ParseInt(s, base, 64).
std::optional<int64_t> goParseInt(std::string_view s, int base) {
  if (s.empty()) return std::nullopt;
  bool neg = false;
  if (s[0] == '+' || s[0] == '-') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  std::optional<uint64_t> u = goParseUint(s, base);
  if (!u) return std::nullopt;
  if (!neg && *u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  if (neg && *u > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
  return neg ? static_cast<int64_t>(0 - *u) : static_cast<int64_t>(*u);
}

// ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
bool yamlStyleFloat(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t b = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > b;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  } else {
    if (!digits()) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

// Go's strconv.ParseFloat(s, 64) for what reaches it here (decimal forms; the
// '.' hint case also needs Go's own syntax check, which is yamlStyleFloat minus
// the integer part). Overflow is an error; underflow is 0.
std::optional<double> goParseFloat(std::string_view s) {
  std::string t(s);
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  if (std::isinf(v)) return std::nullopt;
  return v;
}

// A date as go-yaml's parseTimestamp would take it: only the quick check
// (4 digits then '-'); good enough here: such strings are strings to kipvs,
// and for go-yaml v2 decoding into interface{} too (timestamps stay strings).
bool timestampLike(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i == 4 && i < s.size() && s[i] == '-';
}

// go-yaml v2 resolve("", s), decoding into interface{}.
Resolved goResolve(std::string_view in) {
  Resolved r;
  static const char* const kTrue[] = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
  static const char* const kFalse[] = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
  static const char* const kNull[] = {"", "~", "null", "Null", "NULL"};
  static const char* const kOther[] = {".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
                                       "+.INF", "-.inf", "-.Inf", "-.INF"};
  char hint = 'N';
  if (!in.empty()) {
    const char c = in[0];
    hint = (c == '+' || c == '-')                       ? 'S'
           : (c >= '0' && c <= '9')                     ? 'D'
           : (c != 0 && std::strchr("yYnNtTfFoO~", c)) ? 'M'
           : c == '.'                                   ? '.'
                                                        : 0;  // '<' too: "<<" is a string to resolve()
  }
  if (hint == 0) return r;
  for (const char* t : kTrue)
    if (in == t) return r.kind = Resolved::kBool, r.b = true, r;
  for (const char* t : kFalse)
    if (in == t) return r.kind = Resolved::kBool, r.b = false, r;
  for (const char* t : kNull)
    if (in == t) return r.kind = Resolved::kNull, r;
  for (const char* t : kOther)
    if (in == t) return r.kind = Resolved::kOther, r;
  if (hint == '.') {
    // Go's ParseFloat: ".5", ".5e3" (no '_' outside a base prefix).
    if (yamlStyleFloat(in)) {
      if (auto f = goParseFloat(in)) return r.kind = Resolved::kFloat, r.f = *f, r;
    }
    return r;
  }
  if (hint == 'D' || hint == 'S') {
    if (timestampLike(in)) return r;  // timestamp or not, a string for kipvs's purposes (see above)
    std::string plain;
    for (char c : in)
      if (c != '_') plain += c;
    if (auto i = goParseInt(plain, 0)) return r.kind = Resolved::kInt, r.i = *i, r;
    if (auto u = goParseUint(plain, 0)) return r.kind = Resolved::kUint, r.u = *u, r;
    if (yamlStyleFloat(plain)) {
      if (auto f = goParseFloat(plain)) return r.kind = Resolved::kFloat, r.f = *f, r;
    }
    if (plain.rfind("0b", 0) == 0) {
      if (auto i = goParseInt(std::string_view(plain).substr(2), 2)) return r.kind = Resolved::kInt, r.i = *i, r;
      if (auto u = goParseUint(std::string_view(plain).substr(2), 2)) return r.kind = Resolved::kUint, r.u = *u, r;
    } else if (plain.rfind("-0b", 0) == 0) {
      if (auto i = goParseInt("-" + plain.substr(3), 2)) return r.kind = Resolved::kInt, r.i = *i, r;
    }
  }
  return r;
}

// go-yaml's encoder also quotes what YAML 1.1 would read as a sexagesimal float.
bool isBase60Float(std::string_view s) {
  // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) return false;
  ++i;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_')) ++i;
  int groups = 0;
  while (i < s.size() && s[i] == ':') {
    ++i;
    size_t b = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - b < 2) ++i;
    if (i == b) return false;
    if (i - b == 2 && s[b] > '5') return false;
    ++groups;
  }
  if (groups == 0) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_')) ++i;
  }
  return i == s.size();
}

using Value = rapidjson::Value;

// --- resolve: kipvs against go-yaml on plain scalars ----------------------------

Resolved kipvsResolve(std::string_view s, std::string& json) {
  Resolved r;
  r.kind = Resolved::kOther;
  StatusOr<std::vector<YamlDocument>> docs = yamlToJson("v: " + std::string(s) + "\n", "resolve");
  if (!docs || docs->size() != 1) {
    json = docs ? "(documents: " + std::to_string(docs->size()) + ")" : docs.status().toString();
    return r;
  }
  json = (*docs)[0].json;
  rapidjson::Document d;
  d.Parse<rapidjson::kParseFullPrecisionFlag>(json.c_str(), json.size());  // the value kipvs wrote, not a rounding of it
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("v")) return r;
  const Value& v = d["v"];
  if (v.IsNull()) r.kind = Resolved::kNull;
  else if (v.IsBool()) r.kind = Resolved::kBool, r.b = v.GetBool();
  else if (v.IsInt64()) r.kind = Resolved::kInt, r.i = v.GetInt64();
  else if (v.IsUint64()) r.kind = Resolved::kUint, r.u = v.GetUint64();
  else if (v.IsDouble()) r.kind = Resolved::kFloat, r.f = v.GetDouble();
  else if (v.IsString()) r.kind = Resolved::kStr;
  return r;
}

bool sameResolution(const Resolved& a, const Resolved& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Resolved::kBool: return a.b == b.b;
    case Resolved::kInt: return a.i == b.i;
    case Resolved::kUint: return a.u == b.u;
    case Resolved::kFloat: return a.f == b.f && std::signbit(a.f) == std::signbit(b.f);
    default: return true;
  }
}

// Triaged resolver differences (see the report): the class, or "" when new.
//   resolve-underscore  '_' where go-yaml does not take it: a leading one ("_1": go-yaml's
//                       hint table sends it to string, kipvs reads 1), "._5", and '_' before
//                       a prefix's or exponent's parts ("0_", "1e_-5": go-yaml strips every
//                       '_' first)
//   resolve-0o-octal    "0o17": Go's strconv.ParseInt base 0 (Go >= 1.13) takes it, kipvs not
//   resolve-uint64      > INT64_MAX: go-yaml a uint64, kipvs a float (or a string in hex)
//   resolve-0b-signed   "0b-1": go-yaml's ParseInt(plain[2:], 2) lets a sign in
std::string knownResolveClass(std::string_view s, const Resolved& go, const Resolved& kipvs) {
  (void)kipvs;
  if (s.find('_') != std::string_view::npos) return "resolve-underscore";
  if (go.kind == Resolved::kInt && (s.find('o') != std::string_view::npos || s.find('O') != std::string_view::npos))
    return "resolve-0o-octal";
  if (go.kind == Resolved::kUint) return "resolve-uint64";
  if (go.kind == Resolved::kInt && s.size() > 2 && s.substr(0, 2) == "0b" && (s[2] == '-' || s[2] == '+'))
    return "resolve-0b-signed";
  return "";
}

// Whether the block writer may leave s plain: kipvs must read it back as a
// string; else (a triaged resolve difference) it is quoted, unless strict.
bool kipvsReadsAsString(std::string_view s) {
  if (strict()) return true;
  std::string json;
  Resolved mine = kipvsResolve(s, json);
  if (mine.kind == Resolved::kStr) return true;
  const std::string cls = knownResolveClass(s, goResolve(s), mine);
  if (cls.empty()) return true;  // new: let the block property show it
  reportKnown("block-quoted-" + cls, std::string(s));
  return false;
}

// --- block YAML, as kubectl would write the JSON --------------------------------

// libyaml's emitter (yaml_emitter_analyze_scalar): may this string be a plain
// scalar in block context? Plus our own: printable ASCII/Unicode only, one line.
bool plainSyntaxOk(std::string_view s) {
  if (s.empty()) return false;
  if (s.substr(0, 3) == "---" || s.substr(0, 3) == "...") return false;
  size_t i = 0;
  bool prevSpace = false;
  bool first = true;
  while (i < s.size()) {
    const size_t at = i;
    int32_t v = nextCodePoint(s, i);
    if (v < 0 || !yamlReadable(v) || v == '\t' || v == '\n' || v == '\r' || yaml11Break(v) || v == 0xFEFF) return false;
    const bool followedByBlank = i >= s.size() || s[i] == ' ' || s[i] == '\t';
    if (first) {
      if (std::strchr("#,[]{}&*!|>'\"%@`", static_cast<char>(v)) && v < 0x80) return false;
      if ((v == '?' || v == ':' || v == '-') && followedByBlank) return false;
      if (v == ' ') return false;
    } else {
      if (v == ':' && followedByBlank) return false;
      if (v == '#' && prevSpace) return false;
    }
    if (v == ' ' && i >= s.size()) return false;  // trailing space
    prevSpace = v == ' ';
    first = false;
    (void)at;
  }
  return true;
}

// YAML double-quoted: escapes for everything that is not plainly printable.
std::string doubleQuoted(std::string_view s) {
  std::string out = "\"";
  size_t i = 0;
  while (i < s.size()) {
    size_t at = i;
    int32_t v = nextCodePoint(s, i);
    char b[16];
    if (v == '"') {
      out += "\\\"";
    } else if (v == '\\') {
      out += "\\\\";
    } else if (v == '\n') {
      out += "\\n";
    } else if (v == '\t') {
      out += "\\t";
    } else if (v == 0) {
      out += "\\0";
    } else if (v < 0) {
      std::abort();  // the caller checked UTF-8
    } else if (v < 0x20 || v == 0x7F || !yamlReadable(v) || yaml11Break(v) || v == 0xFEFF || (v >= 0x80 && v < 0xA0)) {
      std::snprintf(b, sizeof b, v <= 0xFFFF ? "\\u%04X" : "\\U%08X", static_cast<unsigned>(v));
      out += b;
    } else {
      out.append(s.substr(at, i - at));
    }
  }
  return out + "\"";
}

bool singleQuotable(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    int32_t v = nextCodePoint(s, i);
    if (v < 0 || !yamlReadable(v) || v == '\n' || v == '\r' || yaml11Break(v) || v == 0xFEFF || v == '\t') return false;
  }
  return true;
}
std::string singleQuoted(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// Folds a one-line scalar's text (plain or double-quoted) at single spaces
// between two non-space characters, past width; continuation lines at
// contIndent. The reader folds each break back into one space.
std::string folded(const std::string& text, size_t width, int contIndent, size_t startColumn) {
  if (width == 0) return text;
  std::string out;
  size_t col = startColumn;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' && col > width && i > 0 && text[i - 1] != ' ' && i + 1 < text.size() && text[i + 1] != ' ' &&
        text[i + 1] != '#' && text[i + 1] != '\t' && text[i - 1] != '\\') {
      out += '\n';
      out.append(contIndent, ' ');
      col = contIndent;
      continue;
    }
    out += c;
    ++col;
  }
  return out;
}

struct Knobs {
  int step = 2;             // indentation per level
  bool seqIndented = false; // "key:\n  - a" rather than go-yaml's "key:\n- a"
  int nullStyle = 0;        // null ~ (empty) Null
  int boolStyle = 0;        // true/false, True/False, yes/no, on/off, y/n
  bool singleQuotes = false;// quote with '...' where possible
  bool quoteAll = false;    // never plain
  size_t width = 0;         // fold long scalars (0: never)
  bool flowLeaves = false;  // small collections in flow style
  bool crlf = false;
  int docMarkers = 0;       // none, "---", "--- + ...", an empty document first
  bool comments = false;
  bool literal = true;      // multi-line strings as literal block scalars
  static Knobs from(uint64_t h) {
    Knobs k;
    k.step = 1 + static_cast<int>(h % 4);  // 1..4
    k.seqIndented = (h >> 2) & 1;
    k.nullStyle = static_cast<int>((h >> 3) % 4);
    k.boolStyle = static_cast<int>((h >> 5) % 5);
    k.singleQuotes = (h >> 8) & 1;
    k.quoteAll = ((h >> 9) & 7) == 0;
    k.width = ((h >> 12) & 3) == 0 ? 12 + ((h >> 14) % 70) : 0;
    k.flowLeaves = ((h >> 21) & 3) == 0;
    k.crlf = ((h >> 23) & 7) == 0;
    k.docMarkers = static_cast<int>((h >> 26) % 4);
    k.comments = ((h >> 28) & 3) == 0;
    k.literal = ((h >> 30) & 7) != 0;
    return k;
  }
  std::string toString() const {
    return "step=" + std::to_string(step) + " seqIndented=" + std::to_string(seqIndented) +
           " null=" + std::to_string(nullStyle) + " bool=" + std::to_string(boolStyle) +
           " single=" + std::to_string(singleQuotes) + " quoteAll=" + std::to_string(quoteAll) +
           " width=" + std::to_string(width) + " flow=" + std::to_string(flowLeaves) + " crlf=" + std::to_string(crlf) +
           " docs=" + std::to_string(docMarkers) + " comments=" + std::to_string(comments) +
           " literal=" + std::to_string(literal);
  }
};

class BlockWriter {
 public:
  explicit BlockWriter(const Knobs& k) : k_(k) {}
  std::string out;
  // A JSON float with an integral value was written: kubectl's YAML path
  // sends it as an integer (80.0 -> 80), which its JSON path refuses.
  bool wroteIntegralFloat = false;

  // A string as a scalar (not a key) at the start of a line position `column`;
  // entryIndent: the column of the innermost block collection's entries.
  std::string scalarString(std::string_view s, int entryIndent, size_t column, bool isKey) {
    if (!isKey && k_.literal && s.find('\n') != std::string_view::npos && literalOk(s)) return literal(s, entryIndent);
    const Resolved r = goResolve(s);
    const bool canPlain = !k_.quoteAll && r.kind == Resolved::kStr && !isBase60Float(s) && plainSyntaxOk(s) &&
                          kipvsReadsAsString(s);
    std::string text;
    if (canPlain) {
      text = std::string(s);
    } else if (k_.singleQuotes && singleQuotable(s)) {
      text = singleQuoted(s);
    } else {
      text = doubleQuoted(s);
    }
    if (!isKey && text.find('\'') != 0) text = folded(text, k_.width, entryIndent + k_.step, column);
    return text;
  }

  std::string number(const Value& v) {
    if (v.IsInt64()) return std::to_string(v.GetInt64());
    if (v.IsUint64()) return std::to_string(v.GetUint64());
    if (std::trunc(v.GetDouble()) == v.GetDouble()) wroteIntegralFloat = true;
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    w.Double(v.GetDouble());
    return b.GetString();
  }

  std::string leaf(const Value& v, int entryIndent, size_t column) {
    switch (v.GetType()) {
      case rapidjson::kNullType: {
        static const char* const kNull[] = {"null", "~", "", "Null"};
        return kNull[k_.nullStyle];
      }
      case rapidjson::kFalseType:
      case rapidjson::kTrueType: {
        static const char* const kBool[][2] = {{"false", "true"}, {"False", "True"}, {"no", "yes"}, {"off", "on"}, {"n", "y"}};
        return kBool[k_.boolStyle][v.IsTrue() ? 1 : 0];
      }
      case rapidjson::kNumberType:
        return number(v);
      case rapidjson::kStringType:
        return scalarString(std::string_view(v.GetString(), v.GetStringLength()), entryIndent, column, false);
      case rapidjson::kObjectType:
        return "{}";
      case rapidjson::kArrayType:
        return "[]";
    }
    return "?";
  }

  // A key: plain or quoted; a long one as an explicit "? key" (as libyaml's
  // emitter does past 128 characters).
  std::string key(std::string_view s, bool& explicitKey) {
    explicitKey = s.size() > 128;
    return scalarString(s, 0, 0, true);
  }

  static bool isLeaf(const Value& v) {
    return !(v.IsObject() && v.MemberCount() > 0) && !(v.IsArray() && !v.Empty());
  }

  // JSON-ish flow text of a small sub-tree (keys and strings double-quoted).
  bool flowable(const Value& v, size_t& budget) {
    if (budget == 0) return false;
    --budget;
    if (v.IsString()) return v.GetStringLength() < 200;
    if (v.IsObject()) {
      for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
        if (it->name.GetStringLength() > 200 || !flowable(it->value, budget)) return false;
      }
    }
    if (v.IsArray()) {
      for (auto& e : v.GetArray())
        if (!flowable(e, budget)) return false;
    }
    return true;
  }
  std::string flow(const Value& v) {
    if (v.IsObject()) {
      std::string o = "{";
      bool first = true;
      for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
        o += (first ? "" : ", ") + doubleQuoted(std::string_view(it->name.GetString(), it->name.GetStringLength())) +
             ": " + flow(it->value);
        first = false;
      }
      return o + "}";
    }
    if (v.IsArray()) {
      std::string o = "[";
      bool first = true;
      for (auto& e : v.GetArray()) {
        o += (first ? "" : ", ") + flow(e);
        first = false;
      }
      return o + "]";
    }
    if (v.IsString()) return doubleQuoted(std::string_view(v.GetString(), v.GetStringLength()));
    if (v.IsNull()) return "null";
    if (v.IsBool()) return v.IsTrue() ? "true" : "false";
    return number(v);
  }
  bool useFlow(const Value& v) {
    if (!k_.flowLeaves || isLeaf(v)) return false;
    size_t budget = 6;
    return flowable(v, budget);
  }

  // A mapping's entries at column indent (the first one's line already started
  // when firstInline).
  void mapping(const Value& v, int indent, bool firstInline) {
    bool first = true;
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (!(first && firstInline)) out.append(indent, ' ');
      first = false;
      bool explicitKey = false;
      std::string ks = key(std::string_view(it->name.GetString(), it->name.GetStringLength()), explicitKey);
      if (explicitKey) {
        out += "? " + ks + "\n";
        out.append(indent, ' ');
        out += ":";
      } else {
        out += ks + ":";
      }
      value(it->value, indent, out.size() - lineStart());
    }
  }

  // The value after "key:" (or after "- "), the entries of its parent at indent.
  void value(const Value& v, int indent, size_t column) {
    if (isLeaf(v) || useFlow(v)) {
      std::string text = isLeaf(v) ? leaf(v, indent, column + 1) : flow(v);
      if (!text.empty()) out += " " + text;
      if (k_.comments && text.find('\n') == std::string::npos && (text.empty() || text.back() != '|')) out += " # c";
      if (out.back() != '\n') out += "\n";
      return;
    }
    out += "\n";
    if (v.IsObject()) {
      mapping(v, indent + k_.step, false);
    } else {
      sequence(v, k_.seqIndented ? indent + k_.step : indent);
    }
  }

  void sequence(const Value& v, int indent) {
    for (auto& e : v.GetArray()) {
      out.append(indent, ' ');
      out += "-";
      if (e.IsObject() && e.MemberCount() > 0 && !useFlow(e)) {
        // "- key: v" then the other keys under the first.
        out += std::string(k_.step >= 2 ? k_.step - 1 : 1, ' ');
        int inner = indent + (k_.step >= 2 ? k_.step : 2);
        mapping(e, inner, true);
      } else if (e.IsArray() && !e.Empty() && !useFlow(e)) {
        out += "\n";
        sequence(e, indent + k_.step);
      } else {
        value(e, indent, out.size() - lineStart());
      }
    }
  }

  void document(const Value& root) {
    if (root.IsObject() && root.MemberCount() > 0) {
      mapping(root, 0, false);
    } else if (root.IsArray() && !root.Empty()) {
      sequence(root, 0);
    } else {
      out += flow(root) + "\n";
    }
  }

 private:
  size_t lineStart() const {
    size_t nl = out.rfind('\n');
    return nl == std::string::npos ? 0 : nl + 1;
  }

  static bool literalOk(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
      int32_t v = nextCodePoint(s, i);
      if (v < 0 || !yamlReadable(v) || v == '\r' || yaml11Break(v) || v == 0xFEFF) return false;
    }
    return true;
  }

  // A literal block scalar (go-yaml writes strings with line breaks so).
  std::string literal(std::string_view s, int entryIndent) {
    std::string head = "|";
    const bool needIndicator = s[0] == ' ' || s[0] == '\n';
    if (needIndicator) head += std::to_string(k_.step);
    if (s.back() != '\n') {
      head += "-";
    } else if (s.size() == 1 || s[s.size() - 2] == '\n') {
      head += "+";
    }
    const int contentIndent = entryIndent + k_.step;
    std::string o = head + "\n";
    std::string_view body = s;
    if (!body.empty() && body.back() == '\n') body.remove_suffix(1);
    size_t start = 0;
    for (;;) {
      size_t nl = body.find('\n', start);
      std::string_view line = body.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
      if (!line.empty()) {
        o.append(contentIndent, ' ');
        o.append(line);
      }
      o += "\n";
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
    return o;
  }

  Knobs k_;
};

void checkResolve(std::string_view s, std::string_view input) {
  if (s.size() > 80 || !plainSyntaxOk(s)) return;
  const Resolved go = goResolve(s);
  std::string json;
  const Resolved mine = kipvsResolve(s, json);
  if (verbose()) std::fprintf(stderr, "--- resolve %s: go %s, kipvs %s (%s)\n", shown(s).c_str(), go.toString().c_str(), mine.toString().c_str(), json.c_str());
  if (sameResolution(go, mine)) return;
  if (go.kind == Resolved::kOther && mine.kind == Resolved::kStr) {
    // .inf/.nan (no JSON number) and "<<" (a merge only as a key): strings to kipvs by design.
    return reportKnown("resolve-inf-nan-merge", std::string(s));
  }
  const std::string cls = knownResolveClass(s, go, mine);
  if (!cls.empty() && !strict()) return reportKnown(cls, std::string(s));
  diverge("resolve: plain scalar", input, "scalar", std::string(s), "go-yaml v2", go.toString() + "\n", "kipvs",
          mine.toString() + " (" + json + ")\n");
}

void eachString(const Value& v, const std::function<void(std::string_view)>& f) {
  if (v.IsString()) f(std::string_view(v.GetString(), v.GetStringLength()));
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      f(std::string_view(it->name.GetString(), it->name.GetStringLength()));
      eachString(it->value, f);
    }
  }
  if (v.IsArray()) {
    for (auto& e : v.GetArray()) eachString(e, f);
  }
}

// Triaged differences of the block property: the class, or "" when new.
//   block-integral-float  a JSON float with an integral value: YAML's 80.0 is
//                         the integer 80 (as kubectl sends it), JSON's is not
std::string knownBlockClass(const BlockWriter& w) {
  if (w.wroteIntegralFloat) return "block-integral-float";
  return "";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kipvs::fuzz::TempFile file("kipvs-yaml-fuzz", ".yaml");
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const uint64_t h = kipvs::fuzz::fnv1a(data, size);
  const std::string& source = file.path;

  // crash (and flow's YAML side): the bytes as a YAML file. The comment line
  // keeps a JSON text from being read as JSON ('{' first decides that).
  file.write("#\n" + std::string(text));
  const std::string viaYaml = normalized(kipvs::fuzz::render(parseFile(source)), source);
  if (verbose()) std::fprintf(stderr, "--- yaml (raw input)\n%s", viaYaml.c_str());

  StatusOr<Cluster> json = parseJson(text, source);
  if (!json) return 0;  // not JSON: only the crash property
  const std::string ref = kipvs::fuzz::render(json);
  if (verbose()) std::fprintf(stderr, "--- json\n%s", ref.c_str());

  // flow
  if (viaYaml != ref) {
    std::optional<std::string> why = yaml11Difference(text);
    if (why && !strict()) {
      reportKnown("flow-" + *why, shown(text, 200));
    } else {
      diverge("flow: JSON text read as YAML", text, "yaml11Difference", why.value_or("(none)"), "parseJson", ref,
              "parseFile(.yaml)", viaYaml);
    }
  }

  // The DOM, for block and resolve (valid UTF-8 only: YAML is Unicode).
  {
    size_t i = 0;
    while (i < size) {
      if (nextCodePoint(text, i) < 0) return 0;
    }
  }
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) return 0;

  // rapidjson 1.1.0 takes a lone low surrogate escape ("\udc00") and writes
  // it as CESU bytes: no YAML text can say that string.
  bool unicode = true;
  eachString(doc, [&](std::string_view s) {
    for (size_t i = 0; i < s.size() && unicode;) unicode = nextCodePoint(s, i) >= 0;
  });
  if (!unicode) {
    reportKnown("dom-not-unicode", shown(text, 200));
    return 0;
  }

  // resolve
  eachString(doc, [&](std::string_view s) { checkResolve(s, text); });

  // block
  const Knobs k = Knobs::from(h * 0x9E3779B97F4A7C15ULL);
  BlockWriter w(k);
  if (k.comments) w.out += "# kubectl get -o yaml\n";
  if (k.docMarkers == 3) w.out += "---\n# nothing\n";
  if (k.docMarkers >= 1) w.out += "---\n";
  w.document(doc);
  if (k.docMarkers == 2) w.out += "...\n";
  std::string yaml = std::move(w.out);
  if (k.crlf) {
    std::string c;
    for (char ch : yaml) {
      if (ch == '\n') c += '\r';
      c += ch;
    }
    yaml = std::move(c);
  }
  file.write("#\n" + yaml);  // YAML even where a flow sub-tree comes first
  const std::string viaBlock = normalized(kipvs::fuzz::render(parseFile(source)), source);
  if (verbose()) std::fprintf(stderr, "--- block yaml (%s)\n%s--- block\n%s", k.toString().c_str(), yaml.c_str(), viaBlock.c_str());
  if (viaBlock != ref) {
    const std::string cls = knownBlockClass(w);
    if (!cls.empty() && !strict()) {
      reportKnown(cls, shown(yaml, 300));
    } else {
      diverge("block: JSON re-written as block YAML", text, "block yaml (" + k.toString() + ")", yaml, "parseJson",
              ref, "parseFile(block .yaml)", viaBlock);
    }
  }
  return 0;
}
