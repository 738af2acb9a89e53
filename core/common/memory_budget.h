// Memory sizes given on the command line and the process's resident memory, for
// `moelab calibrate --layerwise --memory-budget`.
#pragma once

#include <cstdint>
#include <string>

namespace moelab {

// "512M", "1.5G", "64MiB", "10000000" -> bytes. Suffixes K, M, G, T are powers of 1024
// (an optional "iB" or "B" after them is accepted). Throws InputError(flag, ...) for
// anything else or for a size <= 0.
int64_t parse_byte_size(const std::string& flag, const std::string& text);

// The process's peak resident set size so far, in bytes: VmHWM of /proc/self/status
// (Linux), else getrusage's ru_maxrss.
int64_t peak_resident_bytes();
// getrusage(RUSAGE_SELF) ru_maxrss in bytes (Linux reports KiB). Includes the size the
// process had before exec (its parent's, at fork) when that was larger.
int64_t rusage_peak_bytes();

// Makes every allocation of 128 KiB or more its own mapping, unmapped when freed
// (glibc mallopt M_MMAP_THRESHOLD; a no-op elsewhere), so that layers loaded one
// after the other do not pile up in the heap.
void map_large_blocks();

// The opposite, for the whole-model passes (calibrate, eval): blocks up to 32 MiB come
// from the heap and up to 64 MiB of freed heap stay for reuse (glibc's M_MMAP_THRESHOLD
// and M_TRIM_THRESHOLD fixed at the values its dynamic threshold reaches only after
// the first large free), so that each batch's large short-lived tensors do not fault
// in fresh pages: the default model's calibration pass 0.64 -> 0.58 s, peak RSS
// +10 MiB (2 cores, 2026-12-01). A no-op elsewhere.
void reuse_freed_blocks();

// Hands freed heap memory back to the system (glibc malloc_trim; a no-op elsewhere),
// so that a freed layer leaves the resident set.
void return_free_memory();

// Bytes as MiB with one decimal, for logs and messages.
std::string mib(int64_t bytes);

}  // namespace moelab
