// `moelab --ranks P <command> ...` without typing mpirun: the process re-executes
// itself as `mpirun -np P moelab <command> ...` (with --oversubscribe, so P may
// exceed the cores, and --allow-run-as-root when run as root). Under a launcher
// already (mpirun, srun), --ranks must agree with the launcher's rank count.
#pragma once

#include <string>
#include <vector>

namespace moelab::cluster {

// Returns the arguments with --ranks removed; execs mpirun (never returns) when a
// relaunch is needed. Throws InputError for a bad --ranks value or a mismatch.
std::vector<std::string> relaunch_under_mpirun_if_asked(const std::vector<std::string>& args);

}  // namespace moelab::cluster
