// The fast path's tokenizer against rapidjson's Reader (stop when done),
// event for event, on edge cases and on random documents, valid and mutated;
// and neither may write to the input.

#include "controller/json_scan.h"

#include <doctest/doctest.h>
#include <rapidjson/reader.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using kipvs::controller::detail::JsonScanner;
using kipvs::controller::detail::ScanResult;
using rapidjson::SizeType;

// Every event as a line; false from the event numbered stopAt (0-based), if any.
struct Recorder {
  std::vector<std::string> events;
  long stopAt = -1;

  bool add(std::string e) {
    events.push_back(std::move(e));
    return static_cast<long>(events.size()) - 1 != stopAt;
  }
  bool Null() { return add("null"); }
  bool Bool(bool b) { return add(b ? "true" : "false"); }
  bool Int(int i) { return add("int " + std::to_string(i)); }
  bool Uint(unsigned u) { return add("uint " + std::to_string(u)); }
  bool Int64(int64_t i) { return add("int64 " + std::to_string(i)); }
  bool Uint64(uint64_t u) { return add("uint64 " + std::to_string(u)); }
  bool Double(double d) {  // to 12 digits: the scanner rounds correctly, rapidjson's default may not in the last bit
    char text[32];
    std::snprintf(text, sizeof text, "%.12g", d);
    return add(std::string("double ") + text);
  }
  bool RawNumber(const char* s, SizeType n, bool) { return add("raw " + std::string(s, n)); }
  bool String(const char* s, SizeType n, bool copy) { return add("string " + std::string(s, n) + (copy ? " (copy)" : "")); }
  bool Key(const char* s, SizeType n, bool copy) { return add("key " + std::string(s, n) + (copy ? " (copy)" : "")); }
  bool StartObject() { return add("{"); }
  bool EndObject(SizeType n) { return add("} " + std::to_string(n)); }
  bool StartArray() { return add("["); }
  bool EndArray(SizeType n) { return add("] " + std::to_string(n)); }
};

// The text, its NUL, then 16 bytes of padding as the parser's buffers have
// (quotes, so that acting on the padding would show).
std::vector<char> buffer(const std::string& text) {
  std::vector<char> b(text.begin(), text.end());
  b.push_back('\0');
  b.insert(b.end(), 16, '"');
  return b;
}

struct Outcome {
  bool ok = false;       // rapidjson: no error; scanner: kDone
  ScanResult result{};   // scanner only
  size_t used = 0;       // bytes consumed
  std::vector<std::string> events;
  std::string bytes;     // the whole buffer afterwards
};

constexpr unsigned kFlags = rapidjson::kParseStopWhenDoneFlag;

Outcome byRapidjson(const std::string& text, long stopAt = -1) {
  std::vector<char> b = buffer(text);
  Recorder rec;
  rec.stopAt = stopAt;
  rapidjson::Reader reader;
  rapidjson::StringStream ss(b.data());
  Outcome o;
  o.ok = !reader.Parse<kFlags>(ss, rec).IsError();
  o.used = ss.Tell();
  o.events = rec.events;
  o.bytes.assign(b.data(), b.size());
  return o;
}

Outcome byScanner(const std::string& text, long stopAt = -1) {
  std::vector<char> b = buffer(text);
  Recorder rec;
  rec.stopAt = stopAt;
  const char* p = b.data();
  Outcome o;
  o.result = JsonScanner<Recorder>(rec).scan(p);
  o.ok = o.result == ScanResult::kDone;
  o.used = static_cast<size_t>(p - b.data());
  o.events = rec.events;
  o.bytes.assign(b.data(), b.size());
  return o;
}

// What the scanner may leave to rapidjson although rapidjson reads it: numbers
// with a fraction or an exponent, and integers of 20 digits or more.
bool hasBailableNumber(const Outcome& ref) {
  for (const auto& e : ref.events) {
    if (e.rfind("double ", 0) == 0) return true;
    if (e.rfind("uint64 ", 0) == 0 && e.size() - 7 >= 20) return true;
  }
  return false;
}

// The input as both readers must leave it: as it was.
std::string untouched(const std::string& text) {
  std::vector<char> b = buffer(text);
  return std::string(b.data(), b.size());
}

// The contract, for one input: the scanner reads what rapidjson reads, to the
// same events and length, leaves the input as it was, and gives up only on
// what rapidjson rejects or on the numbers above.
void checkAgainstRapidjson(const std::string& text) {
  CAPTURE(text);
  const Outcome ref = byRapidjson(text);
  const Outcome got = byScanner(text);
  REQUIRE(got.result != ScanResult::kStopped);
  CHECK(got.bytes == untouched(text));
  if (got.ok) {
    CHECK(ref.ok);
    CHECK(got.events == ref.events);
    CHECK(got.used == ref.used);
  } else {
    CHECK((!ref.ok || hasBailableNumber(ref)));
  }
}

// Input the scanner must read itself, exactly as rapidjson does.
void checkTaken(const std::string& text) {
  CAPTURE(text);
  const Outcome got = byScanner(text);
  REQUIRE(got.result == ScanResult::kDone);
  const Outcome ref = byRapidjson(text);
  CHECK(got.events == ref.events);
  CHECK(got.used == ref.used);
  CHECK(got.bytes == untouched(text));
}

}  // namespace

TEST_CASE("json scan: edge cases read as rapidjson reads them, or left to it") {
  const std::vector<std::string> cases = {
      "{}", "[]", " \n\t\r {} ", "{\"a\":1}", "[1,2,3]", "{\"a\":{\"b\":[true,false,null]}}",
      "\"plain\"", "\"\"", "\"a\\\"b\"", "\"\\\\\"", "\"\\/\\b\\f\\n\\r\\t\"", "\"caf\\u00e9\"",
      "\"\\u20ac\"", "\"\\ud83d\\ude00\"", "\"\\u0000x\"", "\"\\uD83D\\uDE00\"", "\"raw \xc3\xa9 utf-8\"",
      "\"0123456789abcdef0123456789\"", "\"a long string that spans more than sixteen bytes with \\n one escape\"",
      "0", "-0", "7", "-7", "4294967295", "4294967296", "-2147483648", "-2147483649", "2147483647",
      "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
      "9999999999999999999", "18446744073709551615", "18446744073709551616", "1.5", "-1.5e3", "1e5", "1E5",
      "true", "false", "null", "{\"a\" : 1 , \"b\" :\n[ 1 ,2 ] }",
      // Rejected by rapidjson: the scanner gives up.
      "", "   ", "tru", "nul", "fals", "-", "01", "-01", "[1,]", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}", "{a:1}",
      "[", "{", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"",
      "\"\\ud83d\\u0041\"", "\"ctl \x01 char\"", "\"tab\tinside\"", "[1 2]", "{\"a\":1 \"b\":2}", "}", "]",
      "+1", ".5", "[tru]", "{\"a\":nul}",
      // rapidjson refuses an exponent past 308, on a zero too, which from_chars takes: left to it.
      "0e400", "-0e400", "[1e309]", "0.5e308", "1e-400",
      // Trailing text after the value is not the scanner's business (stop when done).
      "{} trailing", "1,2", "\"a\"b",
  };
  for (const auto& c : cases) checkAgainstRapidjson(c);
}

TEST_CASE("json scan: doubles and 64-bit integers are read, not left to rapidjson") {
  for (const char* text : {"1.5", "-1.5e3", "1e5", "1E+5", "2.5e-3", "0.0", "-0.0", "[1.25,{\"a\":-7e2}]",
                           "9223372036854775807", "-9223372036854775808"}) {
    checkTaken(text);
  }
}

TEST_CASE("json scan: kubectl-shaped items are read, never left to rapidjson") {
  const std::string item =
      R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"svc-000000-abcde",)"
      R"("namespace":"ns-000","labels":{"kubernetes.io/service-name":"svc-000000"}},"addressType":"IPv4",)"
      R"("ports":[{"name":"http","port":80,"protocol":"TCP"}],"endpoints":[{"addresses":["172.16.0.1"],)"
      R"("conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-00","zone":"zone-0",)"
      R"("targetRef":{"kind":"Pod","name":"app-000000-0","namespace":"ns-000"}}]})";
  const std::string pretty = "{\n    \"kind\": \"Service\",\n    \"metadata\": {\n        \"name\": \"a\",\n"
                             "        \"annotations\": {\n            \"x\": \"{\\\"k\\\":\\\"v\\\"}\\n\"\n"
                             "        }\n    },\n    \"spec\": {\n        \"ports\": [\n            {\n"
                             "                \"port\": 443,\n                \"nodePort\": 30443\n"
                             "            }\n        ]\n    }\n}";
  checkTaken(item);
  checkTaken(pretty);
}

TEST_CASE("json scan: a handler that returns false stops it where it stops rapidjson") {
  const std::string text = R"({"a":[1,"x",{"b":null}],"c":"\u00e9","d":-5})";
  const size_t total = byRapidjson(text).events.size();
  for (long stopAt = 0; stopAt < static_cast<long>(total); ++stopAt) {
    CAPTURE(stopAt);
    const Outcome ref = byRapidjson(text, stopAt);
    const Outcome got = byScanner(text, stopAt);
    CHECK(got.result == ScanResult::kStopped);
    CHECK(got.events == ref.events);
    CHECK(got.bytes == untouched(text));
  }
}

namespace {

// A random JSON value as text: nesting, whitespace, escapes, unicode and
// integers across rapidjson's size classes.
class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  std::string value(int depth) {
    switch (pick(depth > 3 ? 5 : 7)) {
      case 0: return string();
      case 1: return integer();
      case 2: return std::vector<const char*>{"true", "false", "null"}[pick(3)];
      case 3: return string();
      case 4: return pick(8) == 0 ? std::vector<const char*>{"1.5", "-2e3", "0.0"}[pick(3)] : integer();
      case 5: return object(depth + 1);
      default: return array(depth + 1);
    }
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  std::string ws() {
    static const char* kinds[] = {"", "", "", " ", "\n", "  ", "\n    ", "\t", "\r\n"};
    return kinds[pick(9)];
  }
  std::string string() {
    static const char* pieces[] = {"a", "node-00", "10.0.0.1", "kubernetes.io/service-name", "\\n", "\\\"", "\\\\",
                                   "\\/", "\\t", "\\u00e9", "\\u20AC", "\\ud83d\\ude00", "\\u0000", "\xc3\xa9", " ",
                                   "0123456789abcdef", "{\\\"k\\\":1}"};
    std::string s = "\"";
    for (size_t n = pick(6); n > 0; --n) s += pieces[pick(sizeof pieces / sizeof *pieces)];
    return s + "\"";
  }
  std::string integer() {
    static const char* fixed[] = {"0", "-0", "4294967295", "4294967296", "-2147483648", "-2147483649",
                                  "9223372036854775807", "-9223372036854775808", "9999999999999999999"};
    if (pick(4) == 0) return fixed[pick(sizeof fixed / sizeof *fixed)];
    const int64_t v = std::uniform_int_distribution<int64_t>(-100000, 100000)(rng_);
    return std::to_string(v);
  }
  std::string object(int depth) {
    std::string s = "{" + ws();
    const size_t n = pick(4);
    for (size_t i = 0; i < n; ++i) {
      s += (i ? "," + ws() : "") + string() + ws() + ":" + ws() + value(depth) + ws();
    }
    return s + "}";
  }
  std::string array(int depth) {
    std::string s = "[" + ws();
    const size_t n = pick(4);
    for (size_t i = 0; i < n; ++i) s += (i ? "," + ws() : "") + value(depth) + ws();
    return s + "]";
  }

  std::mt19937 rng_;
};

}  // namespace

TEST_CASE("json scan: random documents, whole and mutated, against rapidjson") {
  Generator gen(20261126);
  std::mt19937 rng(7);
  size_t taken = 0, valid = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string doc = gen.value(0);
    checkAgainstRapidjson(doc);
    const Outcome ref = byRapidjson(doc);
    REQUIRE(ref.ok);  // the generator writes valid JSON
    ++valid;
    if (!hasBailableNumber(ref)) {
      CAPTURE(doc);
      CHECK(byScanner(doc).ok);  // nothing left to rapidjson without a reason
      ++taken;
    }
    // One byte dropped, changed or inserted.
    std::string m = doc;
    const size_t at = std::uniform_int_distribution<size_t>(0, m.size())(rng);
    static const char mutants[] = "{}[]\",:\\u0 \n-1e.tfn\x01";
    const char c = mutants[std::uniform_int_distribution<size_t>(0, sizeof mutants - 2)(rng)];
    switch (i % 3) {
      case 0:
        if (at < m.size()) m.erase(at, 1);
        break;
      case 1:
        if (at < m.size()) m[at] = c;
        break;
      default:
        m.insert(at, 1, c);
    }
    checkAgainstRapidjson(m);
  }
  CHECK(valid == 3000);
  CHECK(taken > 2000);
}
