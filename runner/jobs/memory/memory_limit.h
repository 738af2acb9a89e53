// How much memory this process may use, from what the machine and the scheduler say,
// for refusing before loading a model that cannot fit (runner/jobs/memory/memory_guard.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace moelab::jobs {

struct MemoryLimit {
  int64_t bytes = 0;   // the smallest known limit, bytes
  std::string source;  // where it comes from, for messages: "cgroup memory.max", "MemAvailable", ...
};

// The smallest of, where known: the cgroup v2 memory.max of this process's cgroup
// (or cgroup v1 memory.limit_in_bytes), Slurm's allocation (SLURM_MEM_PER_NODE, or
// SLURM_MEM_PER_CPU times SLURM_CPUS_ON_NODE; megabytes), and MemAvailable of
// /proc/meminfo. MOELAB_MEMORY_LIMIT (a size: "2G", "512M"; core/common/memory_budget.h)
// replaces them all (tests, and machines whose limits are not visible).
// nullopt when nothing is known. Throws InputError for a malformed MOELAB_MEMORY_LIMIT.
std::optional<MemoryLimit> memory_limit();

}  // namespace moelab::jobs
