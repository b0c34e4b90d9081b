#pragma once
// Process-wide heap setting for kipvs's binaries (called first thing in main).
//
// A reconcile at 10,000 Services builds ~100 MB of short-lived model in a few
// hundred milliseconds. glibc grows its heap 128 KB at a time by default, so
// every fresh 4 KB page costs a page fault, and a fault is dear (under qemu
// TCG, where the suite runs, 20,000 of them were a third of the parse's CPU).
// Growing the heap 64 MB at a time lets the kernel back it with transparent
// huge pages where THP is on ("always", Debian's default): measured in the VM,
// parse + desired went from ~21,000 faults to ~1,500 and 15-25 % less CPU.
// Nothing is committed until touched, so an idle process pays nothing.

#include <malloc.h>

namespace kipvs {

inline void growHeapInLargeSteps() { mallopt(M_TOP_PAD, 64 << 20); }

}  // namespace kipvs
