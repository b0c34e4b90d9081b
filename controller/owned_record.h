#pragma once
// The virtual servers kipvs made where nothing in the kernel says they are
// its own. Ownership (plan.h) reads ownership off the kernel: a virtual server
// on a VIP that kipvs's dummy interface makes local, or a NodePort one within
// the NodePort range on a node address. One kind escapes both: in route mode,
// an externalIP or LoadBalancer IP that is one of the node's own addresses
// gets no route (the node's address already has its local route), and owning
// the whole address would own keepalived's or a by-hand virtual server there.
// So kipvs writes down those it makes there before it makes them, and
// deletes one once no Service wants it. NodePort ones are written down too:
// the node address marks them only while the node has it, and one left on an
// address the node gave up (a DHCP lease changed) is still kipvs's to delete.
//
// The record is a text file per network namespace (the IPVS table's scope):
// `<state dir>/owned-netns-<cookie>`, one "TCP 192.168.1.10:80" per line, the
// cookie the kernel's netns cookie (SO_NETNS_COOKIE: never reused while the
// machine is up). /run fits: it empties at boot, as the IPVS table does.

#include <set>
#include <string>
#include <string_view>

#include "ipvs/model.h"
#include "netlink/status.h"

namespace kipvs::controller {

// "TCP 10.0.0.1:80", "UDP [fd00::1]:53", "SCTP ...": ServiceKey::toString's
// form. Fwmark services are not recorded; "FWM ..." is kParse.
StatusOr<ipvs::ServiceKey> parseServiceKey(std::string_view text);

// The file's text: a comment header, then one key per line, sorted.
std::string formatOwnedRecord(const std::set<ipvs::ServiceKey>& keys);
// Blank lines and '#' comments are skipped; any other bad line is kParse
// naming its line number.
StatusOr<std::set<ipvs::ServiceKey>> parseOwnedRecord(std::string_view text);

// This process's network namespace: "cookie-<SO_NETNS_COOKIE>", or on kernels
// before 5.14 "ino-<inode of /proc/self/ns/net>".
StatusOr<std::string> netnsIdentity();

// The record file of this network namespace under dir.
StatusOr<std::string> ownedRecordPath(const std::string& dir);
// A missing file is an empty record.
StatusOr<std::set<ipvs::ServiceKey>> readOwnedRecord(const std::string& path);
// Written whole to a temporary file beside it, then renamed over it: a
// reader sees the old record or the new one. Creates the directory (0755).
Status writeOwnedRecord(const std::string& path, const std::set<ipvs::ServiceKey>& keys);

}  // namespace kipvs::controller
