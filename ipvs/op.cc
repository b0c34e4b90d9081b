#include "ipvs/client.h"

namespace kipvs::ipvs {

const char* opKindName(Op::Kind k) {
  switch (k) {
    case Op::Kind::kAddService:
      return "add-service";
    case Op::Kind::kUpdateService:
      return "update-service";
    case Op::Kind::kDeleteService:
      return "delete-service";
    case Op::Kind::kAddDest:
      return "add-dest";
    case Op::Kind::kUpdateDest:
      return "update-dest";
    case Op::Kind::kDeleteDest:
      return "delete-dest";
  }
  return "?";
}

namespace {

std::string describeSpec(const ServiceSpec& s) {
  std::string out = "scheduler " + s.scheduler;
  if (s.flags & kSvcFlagPersistent) out += " persistent " + std::to_string(s.timeout) + "s";
  if (s.flags & kSvcFlagOnePacket) out += " one-packet";
  if (s.flags & kSvcFlagSched1) out += " flag-1";
  if (s.flags & kSvcFlagSched2) out += " flag-2";
  if (s.flags & kSvcFlagSched3) out += " flag-3";
  if (!s.pe.empty()) out += " pe " + s.pe;
  return out;
}

std::string describeSpec(const DestSpec& s) {
  std::string out = std::string(fwdMethodName(s.fwd)) + " weight " + std::to_string(s.weight);
  if (s.upperThreshold || s.lowerThreshold) {
    out += " thresholds " + std::to_string(s.lowerThreshold) + ".." + std::to_string(s.upperThreshold);
  }
  return out;
}

}  // namespace

std::string Op::toString() const {
  std::string out = std::string(opKindName(kind)) + " " + service.toString();
  switch (kind) {
    case Kind::kAddService:
    case Kind::kUpdateService:
      out += " " + describeSpec(serviceSpec);
      break;
    case Kind::kDeleteService:
      break;
    case Kind::kAddDest:
    case Kind::kUpdateDest:
      out += " -> " + dest.toString() + " " + describeSpec(destSpec);
      break;
    case Kind::kDeleteDest:
      out += " -> " + dest.toString();
      break;
  }
  return out;
}

}  // namespace kipvs::ipvs
