#pragma once
// A string kept in 16 bytes: up to 15 inline, longer ones on the heap (where
// std::string takes 32 bytes and keeps 15 inline). For what every endpoint
// of every EndpointSlice carries (nodeName, zone): at 10,000 Services of 10
// endpoints that is 3 MB less model, all of it fresh memory the parse would
// fault in (~6 ms a megabyte under qemu, where the benchmark runs).

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kipvs::controller {

class ShortString {
 public:
  ShortString() { setInline({}); }
  ShortString(std::string_view s) { set(s); }  // NOLINT: reads and converts as a string does
  ShortString(const ShortString& o) { set(o.view()); }
  ShortString(ShortString&& o) noexcept {
    std::memcpy(bytes_, o.bytes_, sizeof bytes_);
    o.setInline({});
  }
  ShortString& operator=(const ShortString& o) { return *this = o.view(); }
  ShortString& operator=(ShortString&& o) noexcept {
    if (this != &o) {
      release();
      std::memcpy(bytes_, o.bytes_, sizeof bytes_);
      o.setInline({});
    }
    return *this;
  }
  ShortString& operator=(std::string_view s) {
    ShortString t(s);  // s may point into this one
    return *this = std::move(t);
  }
  ~ShortString() { release(); }

  void assign(std::string_view s) { *this = s; }
  void clear() { *this = ShortString(); }
  bool empty() const { return size() == 0; }
  size_t size() const { return onHeap() ? heapSize() : bytes_[kTag]; }
  const char* data() const { return onHeap() ? heapData() : reinterpret_cast<const char*>(bytes_); }
  std::string_view view() const { return {data(), size()}; }
  operator std::string_view() const { return view(); }  // NOLINT
  std::string str() const { return std::string(view()); }

  friend bool operator==(const ShortString& a, const ShortString& b) { return a.view() == b.view(); }
  friend bool operator==(const ShortString& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const ShortString& a, const char* b) { return a.view() == std::string_view(b); }
  friend bool operator==(const ShortString& a, const std::string& b) { return a.view() == std::string_view(b); }

 private:
  // Inline: the bytes, then their count in the last byte (0..15). On the
  // heap: a pointer, the size in the next 7 bytes, and kHeap in the last.
  static constexpr size_t kTag = 15;
  static constexpr uint8_t kHeap = 0xff;

  bool onHeap() const { return bytes_[kTag] == kHeap; }
  char* heapData() const {
    char* p;
    std::memcpy(&p, bytes_, sizeof p);
    return p;
  }
  size_t heapSize() const {
    size_t n = 0;
    for (size_t i = 0; i < 7; ++i) n |= static_cast<size_t>(bytes_[8 + i]) << (8 * i);
    return n;
  }
  void setInline(std::string_view s) {
    std::memset(bytes_, 0, sizeof bytes_);
    if (!s.empty()) std::memcpy(bytes_, s.data(), s.size());
    bytes_[kTag] = static_cast<uint8_t>(s.size());
  }
  void set(std::string_view s) {
    if (s.size() <= kTag) {
      setInline(s);
      return;
    }
    char* p = new char[s.size()];
    std::memcpy(p, s.data(), s.size());
    std::memcpy(bytes_, &p, sizeof p);
    for (size_t i = 0; i < 7; ++i) bytes_[8 + i] = static_cast<uint8_t>(s.size() >> (8 * i));
    bytes_[kTag] = kHeap;
  }
  void release() {
    if (onHeap()) delete[] heapData();
  }

  alignas(8) uint8_t bytes_[16];
};

}  // namespace kipvs::controller
