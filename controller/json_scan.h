#pragma once
// The List fast path's tokenizer (k8s.cc, ValueParser::item): one JSON value,
// parsed in place, as the same handler events rapidjson's Reader gives with
// kParseInsituFlag | kParseStopWhenDoneFlag, and the same bytes left in the
// buffer (strings decoded in place, each closed by a NUL).
//
// Why not rapidjson's Reader here: in place, it scans a string byte by byte up
// to the next 16-byte boundary before its SIMD loop starts, and kubectl's
// strings are short (a key, an IP address), so nearly all of them are scanned
// byte by byte: that was 31 % of parse + desired's instructions. This scans
// every string and whitespace run with unaligned 16-byte loads, which the
// input's padding (16 bytes past its NUL) makes safe: a load never starts past
// the NUL, and every scan stops at it.
//
// An integer of 20 digits or more, a double out of range and every syntax
// error come back as kBail: the caller reads the item again, from the
// pristine input, with rapidjson (which owns the error messages).
// test/controller/json_scan_test.cc holds the two to the same events and
// bytes.

#include <charconv>
#include <cstdint>
#include <cstring>
#include <system_error>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <rapidjson/rapidjson.h>

namespace kipvs::controller::detail {

inline bool isJsonSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Past a run of whitespace 16 bytes at a time; p must be in a buffer padded as
// scan() needs (the NUL ends every run).
[[gnu::noinline]] inline char* skipJsonSpaceRun(char* p) {
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

// Inline for the common case (compact JSON has no whitespace at all).
inline char* skipJsonSpace(char* p) { return isJsonSpace(*p) ? skipJsonSpaceRun(p + 1) : p; }

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
  ScanResult scan(char*& p) {
    p = skipJsonSpace(p);
    if (*p == '\0') return ScanResult::kBail;
    return value(p);
  }

 private:
  // The first '"', '\\' or control character (a NUL included) at or after p.
  static char* stringEnd(char* p) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
    for (;;) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                        _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
      const unsigned m = static_cast<unsigned>(_mm_movemask_epi8(stop));
      if (m != 0) return p + __builtin_ctz(m);
      p += 16;
    }
#else
    while (*p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) ++p;
    return p;
#endif
  }

  ScanResult value(char*& p) {
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
  ScanResult literal(char*& p, const char* word, size_t n, Event event) {
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
  ScanResult number(char*& p) {
    char* q = p;
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
      while (isDigit(*q)) ++q;
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

  static char* putUtf8(char* dst, uint32_t cp) {
    if (cp < 0x80) {
      *dst++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *dst++ = static_cast<char>(0xC0 | (cp >> 6));
      *dst++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *dst++ = static_cast<char>(0xE0 | (cp >> 12));
      *dst++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *dst++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *dst++ = static_cast<char>(0xF0 | (cp >> 18));
      *dst++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *dst++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *dst++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return dst;
  }

  // p just past the opening quote. Decoded in place, closed by a NUL where
  // the decoded text ends, as rapidjson does.
  ScanResult string(char*& p, bool isKey) {
    char* const head = p;
    char* src = stringEnd(p);
    char* dst = src;
    while (*src != '"') {
      if (*src != '\\') {
        if (static_cast<unsigned char>(*src) < 0x20) return ScanResult::kBail;  // a control character or the end
        // Copy up to the next stop (escapes are rare: a byte at a time is fine).
        *dst++ = *src++;
        continue;
      }
      const char e = src[1];
      src += 2;
      switch (e) {
        case '"': *dst++ = '"'; break;
        case '\\': *dst++ = '\\'; break;
        case '/': *dst++ = '/'; break;
        case 'b': *dst++ = '\b'; break;
        case 'f': *dst++ = '\f'; break;
        case 'n': *dst++ = '\n'; break;
        case 'r': *dst++ = '\r'; break;
        case 't': *dst++ = '\t'; break;
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
          dst = putUtf8(dst, cp);  // a low surrogate alone too, encoded as it is (as rapidjson does)
          break;
        }
        default:
          return ScanResult::kBail;  // an unknown escape
      }
    }
    *dst = '\0';
    p = src + 1;
    const auto n = static_cast<rapidjson::SizeType>(dst - head);
    const bool ok = isKey ? h_.Key(head, n, false) : h_.String(head, n, false);
    return ok ? ScanResult::kDone : ScanResult::kStopped;
  }

  ScanResult object(char*& p) {
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
      if (ScanResult r = value(p); r != ScanResult::kDone) return r;
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

  ScanResult array(char*& p) {
    ++p;
    if (!h_.StartArray()) return ScanResult::kStopped;
    p = skipJsonSpace(p);
    rapidjson::SizeType elements = 0;
    if (*p == ']') {
      ++p;
      return h_.EndArray(0) ? ScanResult::kDone : ScanResult::kStopped;
    }
    for (;;) {
      if (ScanResult r = value(p); r != ScanResult::kDone) return r;
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
};

}  // namespace kipvs::controller::detail
