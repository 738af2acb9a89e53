// The local executor: runs a sweep's jobs on this machine, each as its own process
// (`mpirun -np <ranks> moelab ...` for multi-rank jobs), at most `max_jobs` at once
// and at most `max_ranks` ranks at once (a job larger than that runs alone).
//
// Jobs with a "done" record are skipped; a job starts when all its dependencies are
// done. A failed job (its record says why, its log has the output) blocks only its
// dependents; everything else still runs. Re-running after a crash or kill -9 runs
// exactly the jobs without a "done" record.
#pragma once

#include <functional>
#include <string>

#include "schedulers/job_process.h"
#include "schedulers/results_dir.h"

namespace moelab::schedulers {

struct LocalOptions {
  int max_jobs = 1;
  int max_ranks = 0;  // 0: no limit
  LaunchSettings launch;
};

struct SweepOutcome {
  int done_before = 0;  // finished in earlier runs (skipped)
  int done = 0, failed = 0, blocked = 0;
  bool ok() const { return failed == 0 && blocked == 0; }
};

// `progress` gets one line per started or finished job.
SweepOutcome run_local(const ResultsDir& dir, const LocalOptions& opts,
                       const std::function<void(const std::string&)>& progress);

}  // namespace moelab::schedulers
