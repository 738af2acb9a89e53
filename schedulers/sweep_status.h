// Where a sweep stands, per job and per stage, from its results directory (records,
// running markers) and, for submitted sweeps, one `squeue` call:
//   done     a "done" record exists
//   running  a live process on this host (local) or a RUNNING Slurm task
//   queued   a PENDING Slurm task
//   failed   the last attempt failed (its record has the exit code, its log the output)
//   pending  not started, or interrupted (a stale running marker: the executor died)
#pragma once

#include <string>
#include <vector>

#include "schedulers/results_dir.h"

namespace moelab::schedulers {

struct JobState {
  std::string id;
  results::JobKind kind = results::JobKind::kCalibrate;
  std::string label, state, detail;  // detail: "exit 1, logs/<id>.log", "interrupted", "123_4"
};

struct StageCounts {
  results::JobKind stage = results::JobKind::kCalibrate;
  int done = 0, running = 0, queued = 0, failed = 0, pending = 0;
};

struct SweepStatus {
  std::vector<JobState> jobs;       // in graph order
  std::vector<StageCounts> stages;  // in JobKind order (calibrate ... eval), those present
  bool slurm_read = false;          // the queue was read
  std::string slurm_error;          // why not, when a submission exists but squeue failed
  int count(const std::string& state) const;
};

// read_slurm: query squeue when the sweep was submitted to Slurm.
SweepStatus sweep_status(const ResultsDir& dir, bool read_slurm = true);

}  // namespace moelab::schedulers
