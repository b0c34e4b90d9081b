#pragma once
// The List parser's fast path: one item's reader events (rapidjson SAX)
// straight into a Service or an EndpointSlice, with no DOM and no member
// lookups. It takes only items it reads exactly as k8s.cc's DOM reader
// would: on anything else (a value of the wrong type, a field given twice,
// an unknown enum value, a missing required field, an item whose kind it
// cannot tell when its first field arrives) it gives up, by returning false,
// which stops the reader, and the caller has the DOM reader read that item
// again from the pristine input; the DOM reader owns every error message.
// Tests hold the two to the same result on every fixture and corpus case.
//
// A string event's text lives only until the event returns (it points into
// the input, or into the scanner's buffer when it had escapes): it is copied
// out at once.

#include <rapidjson/rapidjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controller/k8s.h"

namespace kipvs::controller::detail {

// "List", "ServiceList", ...: a kind whose items are the objects.
inline bool isListKind(std::string_view kind) { return kind.ends_with("List"); }

class ItemBuilder {
 public:
  enum class Outcome : uint8_t { kNone, kService, kSlice, kOtherKind };

  // Before each item: defaultKind is the List's item kind ("" for a plain
  // List); depth is how deep in the input the item starts, maxDepth the
  // deepest nesting accepted.
  void reset(std::string_view defaultKind, int depth, int maxDepth);

  // After the reader finished the item without error: what it was (the
  // object is in service() / slice()). kNone after a give-up.
  Outcome outcome() const { return outcome_; }
  bool gaveUp() const { return gaveUp_; }
  Service& service() { return service_; }
  EndpointSlice& slice() { return slice_; }

  // rapidjson's handler interface.
  bool Null();
  bool Bool(bool b);
  bool Int(int i) { return integer(i); }
  bool Uint(unsigned u) { return integer(u); }
  bool Int64(int64_t i) { return integer(i); }
  bool Uint64(uint64_t u) { return u <= static_cast<uint64_t>(INT64_MAX) ? integer(static_cast<int64_t>(u)) : other(); }
  bool Double(double) { return other(); }
  bool RawNumber(const char*, rapidjson::SizeType, bool) { return other(); }
  bool String(const char* s, rapidjson::SizeType n, bool copy);
  bool Key(const char* s, rapidjson::SizeType n, bool copy);
  bool StartObject();
  bool EndObject(rapidjson::SizeType);
  bool StartArray();
  bool EndArray(rapidjson::SizeType);

  // Where a value goes: the context (object or array being read) and, in an
  // object, the field its current key names.
  enum class Ctx : uint8_t;
  enum class F : uint8_t;

 private:
  struct Frame {
    Ctx ctx;
    F field;             // the current key's field (objects)
    uint64_t seen = 0;   // fields met so far (objects): a second one gives up
  };

  bool giveUp() {
    gaveUp_ = true;
    outcome_ = Outcome::kNone;
    return false;
  }
  // An enum field from its spelling (k8s.h's *Of), or give up.
  template <typename E>
  bool set(std::optional<E> value, E& out) {
    if (!value) return giveUp();
    out = *value;
    return true;
  }
  // A scalar that is not a string, integer, boolean or null.
  bool other();
  bool integer(int64_t v);
  // Descends into an object or array value of the current field.
  bool open(bool isObject);
  bool close();
  bool decideKind(std::string_view kind);
  bool endItem();
  ObjectMeta& meta();  // of the kind decided

  Frame& top() { return frames_.back(); }

  std::vector<Frame> frames_;
  int skip_ = 0;  // > 0: inside a value nobody reads (nesting level within it)
  int depth_ = 0, maxDepth_ = 0;
  std::string defaultKind_;
  std::string_view provisionalKind_;  // the kind assumed before the item's own kind field ("": none)
  bool kindRequired_ = false;         // assumed from the fields: the item must confirm it
  // The item's apiVersion, as far as it matters: one kipvs reads its kind in, or another.
  enum class ApiVersion : uint8_t { kAbsent, kCoreV1, kDiscoveryV1, kOther };
  ApiVersion apiVersion_ = ApiVersion::kAbsent;
  Outcome kind_ = Outcome::kNone;  // decided kind, while reading
  Outcome outcome_ = Outcome::kNone;
  bool gaveUp_ = false;
  bool addressTypeSet_ = false;
  bool portSet_ = false;  // the Service port being read has its port
  std::string key_;       // a label's or annotation's key, until its value
  bool keepEntry_ = false;  // ... and whether it is one kipvs reads (isKeptLabel / isKeptAnnotation)
  std::string name_;      // a hints entry's name, until its object ends
  std::vector<std::string>* strList_ = nullptr;   // the string list being read
  std::vector<std::string>* nameList_ = nullptr;  // the hints list being read
  Service service_;
  EndpointSlice slice_;
  // The slice's endpoints while it is read; moved into slice_ at its end, in
  // one allocation of the right size. Reused across items, it stops growing
  // after the first large slice: growing each slice's own vector cost a
  // chain of reallocations per slice, and the large ones made glibc
  // consolidate its free lists every time (about a sixth of the parse natively).
  std::vector<Endpoint> endpoints_;
};

}  // namespace kipvs::controller::detail
