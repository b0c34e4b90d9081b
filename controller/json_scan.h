#pragma once
// The List fast path's tokenizer (k8s.cc, ValueParser::item): one JSON value,
// as the same handler events rapidjson's Reader gives with
// kParseStopWhenDoneFlag. It never writes to the input: a string without
// escapes is handed over where it lies (not NUL-terminated), one with escapes
// decoded into the scanner's own buffer; either way only until the event
// returns (copy = true, as rapidjson's reader says when not in place). So the
// input stays pristine: an item the builder gives up is read again from the
// same bytes, and two threads can parse one buffer.
//
// Why not rapidjson's Reader here: it scans a string byte by byte up to the
// next 16-byte boundary before its SIMD loop starts, and kubectl's strings are
// short (a key, an IP address), so nearly all of them are scanned byte by
// byte: that was 31 % of parse + desired's instructions. This scans every
// string, and every run of spaces, with unaligned 8-byte loads into a 64-bit
// word (mixed whitespace past the first eight bytes of a run: 16-byte SSE2
// loads), which the input's padding (16 bytes past its NUL) makes safe: a
// load never starts past the NUL, and every scan stops at it.
//
// An integer of 20 digits or more, a double out of range (or with an
// exponent of three digits or more) and every syntax error come back as kBail: the caller reads the item again with rapidjson
// (which owns the error messages). test/controller/json_scan_test.cc holds
// the two to the same events, and the input to its bytes.

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <rapidjson/rapidjson.h>

namespace kipvs::controller::detail {

inline bool isJsonSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Past a run of whitespace 16 bytes at a time; p must be in a buffer padded as
// scan() needs (the NUL ends every run).
[[gnu::noinline]] inline const char* skipJsonSpaceRun(const char* p) {
  // kubectl indents by four spaces a level: most runs are a newline (already
  // past) and 8-24 spaces. Those go eight at a time, one 64-bit compare each
  // (a load never starts past the NUL: a word holding it is no run of
  // spaces), then byte by byte; under qemu's TCG each vector instruction
  // below is emulated by a helper call, a plain compare is not.
  constexpr uint64_t kEightSpaces = 0x2020202020202020ULL;
  uint64_t word;
  std::memcpy(&word, p, sizeof word);
  while (word == kEightSpaces) {
    p += 8;
    std::memcpy(&word, p, sizeof word);
  }
  for (int i = 0; i < 8; ++i, ++p) {
    if (!isJsonSpace(*p)) return p;
  }
#if defined(__SSE2__)
  const __m128i sp = _mm_set1_epi8(' '), nl = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'), tab = _mm_set1_epi8('\t');
  for (;;) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, nl)),
                                    _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, tab)));
    const unsigned other = ~static_cast<unsigned>(_mm_movemask_epi8(ws)) & 0xFFFFu;
    if (other != 0) return p + __builtin_ctz(other);
    p += 16;
  }
#else
  while (isJsonSpace(*p)) ++p;
  return p;
#endif
}

// Inline for the common case (compact JSON has no whitespace at all); forced,
// since the scanner's loops grew past where the compiler inlines it by itself.
[[gnu::always_inline]] inline const char* skipJsonSpace(const char* p) {
  return isJsonSpace(*p) ? skipJsonSpaceRun(p + 1) : p;
}

enum class ScanResult : uint8_t {
  kDone,     // the value was read; p is just past it
  kStopped,  // the handler returned false
  kBail,     // something this scanner leaves to rapidjson (see above)
};

template <typename Handler>
class JsonScanner {
 public:
  explicit JsonScanner(Handler& h) : h_(h) {}

  // One value at p, after optional whitespace. The buffer must end in a NUL
  // followed by 16 readable bytes.
  ScanResult scan(const char*& p) {
    p = skipJsonSpace(p);
    if (*p == '\0') return ScanResult::kBail;
    return value(p);
  }

 private:
  // The first '"', '\\' or control character (a NUL included) at or after p.
  // The first '"', '\\' or control byte (the NUL among them) from p, eight
  // bytes at a time in a 64-bit word: a byte is zero in w ^ ('"' x 8) where
  // w has a quote, and (x - 0x01..) & ~x & 0x80.. marks the lowest zero byte
  // of x exactly (higher marks may be a borrow's, and are not looked at);
  // (w - 0x20..) & ~w & 0x80.. the lowest byte below 0x20. Plain integer
  // work: under qemu's TCG, where the benchmarks run, each SSE2 instruction
  // is emulated by a helper call, and an SSE2 loop over 16 bytes took 18 %
  // more CPU for the whole parse (kubectl's 78 MB, 10,000 Services).
  static const char* stringEnd(const char* p) {
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
    for (;;) {
      uint64_t w;
      std::memcpy(&w, p, sizeof w);
      const uint64_t q = w ^ (kOnes * '"'), b = w ^ (kOnes * '\\');
      const uint64_t stop = (((q - kOnes) & ~q) | ((b - kOnes) & ~b) | ((w - kOnes * 0x20) & ~w)) & kHighs;
      if (stop != 0) return p + (__builtin_ctzll(stop) >> 3);
      p += 8;
    }
  }

  ScanResult value(const char*& p) {
    switch (*p) {
      case '{':
        return object(p);
      case '[':
        return array(p);
      case '"':
        ++p;
        return string(p, false);
      case 't':
        return literal(p, "true", 4, [this] { return h_.Bool(true); });
      case 'f':
        return literal(p, "false", 5, [this] { return h_.Bool(false); });
      case 'n':
        return literal(p, "null", 4, [this] { return h_.Null(); });
      default:
        return number(p);
    }
  }

  template <typename Event>
  ScanResult literal(const char*& p, const char* word, size_t n, Event event) {
    if (std::memcmp(p, word, n) != 0) return ScanResult::kBail;  // the padding makes the read safe
    p += n;
    return event() ? ScanResult::kDone : ScanResult::kStopped;
  }

  static bool isDigit(char c) { return c >= '0' && c <= '9'; }

  // Integers as rapidjson reports them: Uint / Uint64 when not negative, Int /
  // Int64 when negative, by the smallest that holds the value; with a
  // fraction or an exponent, Double (its value correctly rounded; rapidjson's
  // default may differ in the last bit, which nobody here reads: the item
  // builder takes no doubles).
  ScanResult number(const char*& p) {
    const char* q = p;
    const bool minus = *q == '-';
    if (minus) ++q;
    uint64_t u = 0;
    if (*q == '0') {
      ++q;  // a digit after it ends the number (an error in any container, as in rapidjson)
    } else if (*q >= '1' && *q <= '9') {
      int digits = 0;
      while (isDigit(*q)) {
        if (++digits > 19) return ScanResult::kBail;  // may not fit in 64 bits: rapidjson decides
        u = u * 10 + static_cast<unsigned>(*q - '0');
        ++q;
      }
    } else {
      return ScanResult::kBail;
    }
    bool isDouble = false;
    if (*q == '.') {
      ++q;
      if (!isDigit(*q)) return ScanResult::kBail;
      while (isDigit(*q)) ++q;
      isDouble = true;
    }
    if (*q == 'e' || *q == 'E') {
      ++q;
      if (*q == '+' || *q == '-') ++q;
      if (!isDigit(*q)) return ScanResult::kBail;
      const char* exp = q;
      while (isDigit(*q)) ++q;
      // rapidjson refuses an exponent past 308 even on a zero ("0e400"),
      // which from_chars takes: a long one is rapidjson's to judge.
      if (q - exp > 2) return ScanResult::kBail;
      isDouble = true;
    }
    bool ok;
    if (isDouble) {
      double d = 0;
      const auto [end, ec] = std::from_chars(p, q, d);
      if (ec != std::errc() || end != q) return ScanResult::kBail;  // out of range: rapidjson's error
      ok = h_.Double(d);
    } else if (!minus) {
      ok = u <= 0xFFFFFFFFu ? h_.Uint(static_cast<unsigned>(u)) : h_.Uint64(u);
    } else if (u <= 0x80000000u) {
      ok = h_.Int(static_cast<int>(-static_cast<int64_t>(u)));
    } else if (u <= 0x8000000000000000u) {
      ok = h_.Int64(static_cast<int64_t>(~u + 1));
    } else {
      return ScanResult::kBail;  // rapidjson makes it a double
    }
    p = q;
    return ok ? ScanResult::kDone : ScanResult::kStopped;
  }

  static int hex4(const char* p) {
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = p[i];
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return -1;
      }
      v = v * 16 + d;
    }
    return v;
  }

  static void putUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  ScanResult event(const char* s, size_t n, bool isKey) {
    const auto len = static_cast<rapidjson::SizeType>(n);
    const bool ok = isKey ? h_.Key(s, len, true) : h_.String(s, len, true);
    return ok ? ScanResult::kDone : ScanResult::kStopped;
  }

  // p just past the opening quote. The common case (no escapes: handed over
  // where it lies) is inlined into its callers: a call here cost more than the
  // scan (native, on the 28 MB benchmark input, 18 of a string's 52
  // instructions saved and restored registers). With element() and
  // skipJsonSpace() inlined as well, the parse takes 14 % fewer instructions
  // natively, and 11 % less CPU in the TCG VM.
  [[gnu::always_inline]] ScanResult string(const char*& p, bool isKey) {
    const char* const head = p;
    const char* src = stringEnd(p);
    if (*src == '"') [[likely]] {
      p = src + 1;
      return event(head, static_cast<size_t>(src - head), isKey);
    }
    return escapedString(p, head, src, isKey);
  }

  // The rest of a string from src, its first '\\' or control character.
  [[gnu::noinline]] ScanResult escapedString(const char*& p, const char* head, const char* src, bool isKey) {
    decoded_.assign(head, src);
    while (*src != '"') {
      if (*src != '\\') {
        if (static_cast<unsigned char>(*src) < 0x20) return ScanResult::kBail;  // a control character or the end
        decoded_ += *src++;  // escapes are rare: a byte at a time is fine
        continue;
      }
      const char e = src[1];
      src += 2;
      switch (e) {
        case '"': decoded_ += '"'; break;
        case '\\': decoded_ += '\\'; break;
        case '/': decoded_ += '/'; break;
        case 'b': decoded_ += '\b'; break;
        case 'f': decoded_ += '\f'; break;
        case 'n': decoded_ += '\n'; break;
        case 'r': decoded_ += '\r'; break;
        case 't': decoded_ += '\t'; break;
        case 'u': {
          int cu = hex4(src);
          if (cu < 0) return ScanResult::kBail;
          src += 4;
          uint32_t cp = static_cast<uint32_t>(cu);
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate: its low half must follow
            if (src[0] != '\\' || src[1] != 'u') return ScanResult::kBail;
            const int lo = hex4(src + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) return ScanResult::kBail;
            src += 6;
            cp = (((cp - 0xD800) << 10) | (static_cast<uint32_t>(lo) - 0xDC00)) + 0x10000;
          }
          putUtf8(decoded_, cp);  // a low surrogate alone too, encoded as it is (as rapidjson does)
          break;
        }
        default:
          return ScanResult::kBail;  // an unknown escape
      }
    }
    p = src + 1;
    return event(decoded_.data(), decoded_.size(), isKey);
  }

  // A member's value or an array's element: strings, most of them, here;
  // the rest through value().
  [[gnu::always_inline]] ScanResult element(const char*& p) {
    if (*p == '"') {
      ++p;
      return string(p, false);
    }
    return value(p);
  }

  ScanResult object(const char*& p) {
    ++p;
    if (!h_.StartObject()) return ScanResult::kStopped;
    p = skipJsonSpace(p);
    rapidjson::SizeType members = 0;
    if (*p == '}') {
      ++p;
      return h_.EndObject(0) ? ScanResult::kDone : ScanResult::kStopped;
    }
    for (;;) {
      if (*p != '"') return ScanResult::kBail;
      ++p;
      if (ScanResult r = string(p, true); r != ScanResult::kDone) return r;
      p = skipJsonSpace(p);
      if (*p != ':') return ScanResult::kBail;
      p = skipJsonSpace(p + 1);
      if (ScanResult r = element(p); r != ScanResult::kDone) return r;
      ++members;
      p = skipJsonSpace(p);
      if (*p == ',') {
        p = skipJsonSpace(p + 1);
        continue;
      }
      if (*p != '}') return ScanResult::kBail;
      ++p;
      return h_.EndObject(members) ? ScanResult::kDone : ScanResult::kStopped;
    }
  }

  ScanResult array(const char*& p) {
    ++p;
    if (!h_.StartArray()) return ScanResult::kStopped;
    p = skipJsonSpace(p);
    rapidjson::SizeType elements = 0;
    if (*p == ']') {
      ++p;
      return h_.EndArray(0) ? ScanResult::kDone : ScanResult::kStopped;
    }
    for (;;) {
      if (ScanResult r = element(p); r != ScanResult::kDone) return r;
      ++elements;
      p = skipJsonSpace(p);
      if (*p == ',') {
        p = skipJsonSpace(p + 1);
        continue;
      }
      if (*p != ']') return ScanResult::kBail;
      ++p;
      return h_.EndArray(elements) ? ScanResult::kDone : ScanResult::kStopped;
    }
  }

  Handler& h_;
  std::string decoded_;  // the last string with escapes, decoded
};

}  // namespace kipvs::controller::detail
