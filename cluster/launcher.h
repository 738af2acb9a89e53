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

// Sets PMIX_MCA_psec=native unless the user set PMIX_MCA_psec, so that every mpirun moelab
// starts (--ranks, the local executor's jobs) and their ranks inherit it. Why: Open MPI's
// PMIx tries munge authentication first; where munge is installed but its daemon is not
// running (any machine with Slurm's packages and no Slurm up) each mpirun then waits
// 2.3 s before falling back to native (Unix socket credentials, what a local launch uses
// anyway). Call once at start-up, before threads exist (setenv is not thread-safe).
void prefer_native_pmix_security();

}  // namespace moelab::cluster
