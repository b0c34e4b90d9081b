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
//
// Blocks of up to 32 MB (glibc's ceiling for this setting) come from the heap
// too, and freeing does not give memory back to the kernel below 256 MB: what
// is freed (the parse's scratch, a stdin or YAML input read whole) is reused
// by the allocations that follow instead of being unmapped and then faulted
// in again, zeroed (VM: computeDesired's CPU 0.55-0.78 s -> 0.48-0.53 s, when
// files were still read whole).

#include <malloc.h>

namespace kipvs {

inline void growHeapInLargeSteps() {
  mallopt(M_TOP_PAD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace kipvs
