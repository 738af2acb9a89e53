#include "runner/jobs/memory/memory_limit.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/common/memory_budget.h"

namespace moelab::jobs {
namespace {

std::optional<int64_t> read_number(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return std::nullopt;
  try {
    const long long v = std::stoll(s);
    // cgroup v1 reports "no limit" as a huge page-rounded number.
    if (v <= 0 || v >= (int64_t(1) << 60)) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The cgroup limit of this process: v2 (one "0::/path" line in /proc/self/cgroup),
// else v1's memory controller. Parent cgroups may be tighter: walk up to the root.
std::optional<int64_t> cgroup_limit() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  std::optional<int64_t> best;
  auto take = [&](std::optional<int64_t> v) {
    if (v && (!best || *v < *best)) best = v;
  };
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    const bool v1 = controllers.find("memory") != std::string::npos;
    if (!v2 && !v1) continue;
    const std::string root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    const std::string file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
    for (;;) {
      take(read_number(root + path + file));
      if (path.empty() || path == "/") break;
      path = path.substr(0, path.find_last_of('/'));
    }
    take(read_number(root + file));
  }
  return best;
}

std::optional<int64_t> env_megabytes(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  try {
    // Slurm's values are megabytes, possibly with a unit suffix (parse_byte_size
    // reads a bare number as bytes).
    std::string s = v;
    if (s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s) << 20;
    return parse_byte_size(name, s);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<int64_t> mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

}  // namespace

std::optional<MemoryLimit> memory_limit() {
  if (const char* v = std::getenv("MOELAB_MEMORY_LIMIT"); v && *v)
    return MemoryLimit{parse_byte_size("MOELAB_MEMORY_LIMIT", v), "MOELAB_MEMORY_LIMIT"};
  std::optional<MemoryLimit> best;
  auto take = [&](std::optional<int64_t> bytes, const std::string& source) {
    if (bytes && (!best || *bytes < best->bytes)) best = MemoryLimit{*bytes, source};
  };
  take(cgroup_limit(), "the cgroup memory limit");
  take(env_megabytes("SLURM_MEM_PER_NODE"), "SLURM_MEM_PER_NODE");
  if (auto per_cpu = env_megabytes("SLURM_MEM_PER_CPU")) {
    const char* cpus = std::getenv("SLURM_CPUS_ON_NODE");
    int64_t n = 1;
    if (cpus && *cpus) n = std::max<int64_t>(1, std::atoll(cpus));
    take(*per_cpu * n, "SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE");
  }
  take(mem_available(), "MemAvailable in /proc/meminfo");
  return best;
}

}  // namespace moelab::jobs
