#include "netlink/status.h"

#include <string>

namespace kipvs {

const char* errnoName(int errnum) {
  switch (errnum) {
#define KIPVS_ERRNO(e) \
  case e:              \
    return #e;
    KIPVS_ERRNO(EPERM)
    KIPVS_ERRNO(ENOENT)
    KIPVS_ERRNO(ESRCH)
    KIPVS_ERRNO(EINTR)
    KIPVS_ERRNO(EIO)
    KIPVS_ERRNO(E2BIG)
    KIPVS_ERRNO(EBADF)
    KIPVS_ERRNO(EAGAIN)
    KIPVS_ERRNO(ENOMEM)
    KIPVS_ERRNO(EACCES)
    KIPVS_ERRNO(EFAULT)
    KIPVS_ERRNO(EBUSY)
    KIPVS_ERRNO(EEXIST)
    KIPVS_ERRNO(ENODEV)
    KIPVS_ERRNO(EINVAL)
    KIPVS_ERRNO(ENOSPC)
    KIPVS_ERRNO(ERANGE)
    KIPVS_ERRNO(EMSGSIZE)
    KIPVS_ERRNO(EPROTONOSUPPORT)
    KIPVS_ERRNO(EOPNOTSUPP)
    KIPVS_ERRNO(EAFNOSUPPORT)
    KIPVS_ERRNO(ENOBUFS)
    KIPVS_ERRNO(ETIMEDOUT)
    KIPVS_ERRNO(ECONNREFUSED)
    KIPVS_ERRNO(ENOSYS)
    KIPVS_ERRNO(EPIPE)
    KIPVS_ERRNO(EPROTO)
    KIPVS_ERRNO(EOVERFLOW)
    KIPVS_ERRNO(EADDRNOTAVAIL)
    KIPVS_ERRNO(ENOPROTOOPT)
#undef KIPVS_ERRNO
    default:
      return nullptr;
  }
}

std::string errnoLabel(int errnum) {
  const char* name = errnoName(errnum);
  return name ? name : std::to_string(errnum);
}

std::string Status::toString() const {
  if (isOk()) return "OK";
  std::string out = message_;
  if (errnum_ != 0) {
    const char* name = errnoName(errnum_);
    if (!out.empty()) out += ": ";
    out += std::strerror(errnum_);
    out += " (";
    out += name ? name : std::to_string(errnum_);
    out += ")";
  }
  return out;
}

}  // namespace kipvs
