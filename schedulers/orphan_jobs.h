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

// The bookkeeping files a killed executor was writing when it died (jobs/<id>.json and
// jobs/<id>.running are written under a temporary name, "<name>.tmp-<pid>", then renamed:
// core/common/atomic_output.h): the temporaries of processes that no longer run on this
// machine. Returns how many were removed. Call it holding the SweepLock, after
// stop_orphan_jobs.
int remove_stale_job_temps(const std::string& results_dir);

}  // namespace moelab::schedulers
