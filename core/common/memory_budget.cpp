#include "core/common/memory_budget.h"

#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cctype>
#include <cmath>
#include <cstdio>

#include "core/common/error.h"

namespace moelab {

int64_t parse_byte_size(const std::string& flag, const std::string& text) {
  const std::string bad = "\"" + text + "\" is not a size (e.g. 512M, 2G, 64MiB, or bytes)";
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw InputError(flag, bad);
  }
  std::string unit = text.substr(used);
  for (auto& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 1;
  if (!unit.empty() && std::string("KMGT").find(unit[0]) != std::string::npos) {
    scale = std::pow(1024.0, double(std::string("KMGT").find(unit[0]) + 1));
    unit = unit.substr(1);
    if (unit == "IB" || unit == "B") unit.clear();
  } else if (unit == "B") {
    unit.clear();
  }
  if (!unit.empty() || !std::isfinite(value)) throw InputError(flag, bad);
  const double bytes = value * scale;
  if (!(bytes >= 1) || bytes > 9.0e18) throw InputError(flag, "\"" + text + "\" must be a positive size");
  return int64_t(bytes);
}

int64_t peak_resident_bytes() {
  // VmHWM: the peak of this process image. ru_maxrss also holds the parent's size
  // at fork (Linux keeps the larger across exec), so a moelab started from a big
  // process (pytest with torch loaded) would report that instead.
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long long kib = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %lld kB", &kib) == 1) break;
    std::fclose(f);
    if (kib >= 0) return int64_t(kib) * 1024;
  }
  return rusage_peak_bytes();
}

int64_t rusage_peak_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

void map_large_blocks() {
#if defined(__GLIBC__)
  // Setting the threshold turns off glibc's dynamic one, which rises to the size of
  // the largest block freed (up to 32 MiB) and then serves such blocks from the heap,
  // where a freed layer's tensors stay resident: measured 168 -> 114 MiB above start
  // for a 53 MiB layer (bench/layerwise_memory.py).
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

void reuse_freed_blocks() {
#if defined(__GLIBC__)
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

void return_free_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

std::string mib(int64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / 1048576.0);
  return buf;
}

}  // namespace moelab
