#pragma once

#include <memory>

namespace kipvs::ipvs {

// A T kept out of line, or nothing when it equals T{}: 8 bytes where a T is
// large and usually default. Copies deep; reads as the T it holds.
// - A destination's traffic counters (StatsBox): most tables never hold any
//   (the desired one; reconcile reads the live one without them), and inline
//   they were 80 of a map node's ~180 bytes: 8 MB per table at 100,000
//   destinations, all of it fresh memory to fault in.
// - An op's service spec: only service ops carry one (see Op).
// - An endpoint's topology hints: most endpoints have none.
template <class T>
class DefaultBox {
 public:
  DefaultBox() = default;
  DefaultBox(const T& v) { *this = v; }  // NOLINT: a T converts, as a T member did
  DefaultBox(const DefaultBox& o) : p_(o.p_ ? std::make_unique<T>(*o.p_) : nullptr) {}
  DefaultBox(DefaultBox&&) noexcept = default;
  DefaultBox& operator=(const DefaultBox& o) {
    p_ = o.p_ ? std::make_unique<T>(*o.p_) : nullptr;
    return *this;
  }
  DefaultBox& operator=(DefaultBox&&) noexcept = default;
  DefaultBox& operator=(const T& v) {
    if (v == defaultValue()) {
      p_.reset();
    } else {
      p_ = std::make_unique<T>(v);
    }
    return *this;
  }
  // For filling in place: makes a T{} first if there is none.
  T& mut() {
    if (!p_) p_ = std::make_unique<T>();
    return *p_;
  }
  const T& get() const { return p_ ? *p_ : defaultValue(); }
  operator const T&() const { return get(); }  // NOLINT: reads as the T it holds
  bool operator==(const DefaultBox& o) const { return get() == o.get(); }
  bool operator==(const T& o) const { return get() == o; }

 private:
  static const T& defaultValue() {
    static const T kDefault{};
    return kDefault;
  }
  std::unique_ptr<T> p_;
};
}  // namespace kipvs::ipvs
