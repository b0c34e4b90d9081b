#pragma once
// Errors as values. A Status carries a coarse code, the raw errno the kernel
// returned (never folded through libnl's error mapping: ESRCH and ENOENT mean
// different things to IPVS) and a message naming the object involved.

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kipvs {

enum class Code {
  kOk = 0,
  kInvalid,      // input rejected before reaching the kernel
  kKernel,       // the kernel answered with a negative errno (see errnum())
  kTimeout,      // no answer before the deadline
  kParse,        // malformed input (JSON, netlink attributes)
  kIo,           // socket / file level failure
  kUnsupported,  // the kernel lacks a feature (module, family)
  kInternal,
};

class Status {
 public:
  Status() = default;  // ok

  static Status ok() { return Status(); }
  static Status error(Code code, std::string message, int errnum = 0) {
    Status s;
    s.code_ = code;
    s.errnum_ = errnum;
    s.message_ = std::move(message);
    return s;
  }
  // A kernel error: errnum is positive (as in errno.h).
  static Status kernel(int errnum, std::string message) {
    return error(Code::kKernel, std::move(message), errnum);
  }
  static Status invalid(std::string message) { return error(Code::kInvalid, std::move(message), EINVAL); }

  bool isOk() const { return code_ == Code::kOk; }
  explicit operator bool() const { return isOk(); }
  Code code() const { return code_; }
  int errnum() const { return errnum_; }
  const std::string& message() const { return message_; }

  // "message: No such process (ESRCH)"
  std::string toString() const;

  // Prefix the message with context ("service TCP 10.0.0.1:80: ...").
  Status withContext(const std::string& context) const {
    if (isOk()) return *this;
    Status s = *this;
    s.message_ = context + (message_.empty() ? "" : ": " + message_);
    return s;
  }

 private:
  Code code_ = Code::kOk;
  int errnum_ = 0;
  std::string message_;
};

// Symbolic errno name ("ESRCH"), or nullptr for one not listed.
const char* errnoName(int errnum);
// errnoName, or the number for one not listed.
std::string errnoLabel(int errnum);

template <typename T>
class StatusOr {
 public:
  StatusOr(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : v_(std::move(value)) {}         // NOLINT

  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }
  Status status() const { return isOk() ? Status::ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace kipvs

#define KIPVS_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::kipvs::Status kipvs_s_ = (expr);       \
    if (!kipvs_s_.isOk()) return kipvs_s_;   \
  } while (0)
