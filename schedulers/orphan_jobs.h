// Jobs left running by an executor that died (kill -9): its children got SIGTERM
// (PR_SET_PDEATHSIG) but may still be shutting down (mpirun and its ranks), and an
// orphan still writing into the results directory must not race the re-run of its
// job. Whoever holds the sweep's lock owns every job process of that directory, so
// any other moelab or MPI-launcher process whose command line names the directory's
// job outputs (<dir>/prune/..., <dir>/eval/..., ...) is an orphan.
#pragma once

#include <chrono>
#include <string>

namespace moelab::schedulers {

// Stops (SIGTERM, then SIGKILL after `grace`) those orphans on this machine.
// Returns how many there were. Call it holding the SweepLock.
int stop_orphan_jobs(const std::string& results_dir, std::chrono::milliseconds grace = std::chrono::seconds(10));

}  // namespace moelab::schedulers
