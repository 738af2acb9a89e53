// A sweep's results directory: everything a sweep produces, and all a report needs.
//
//   sweep.yaml        the spec as given (a byte copy)
//   plan.json         the job graph ({"name", "jobs": [...]}; arguments keep the {out}
//                     placeholder, so the directory can be moved and still be read)
//   calibrate/ score/ prune/ finetune/ eval/    each job's output, named by job id
//   jobs/             job records (job_record.h)
//   logs/<id>.log     each job's output (all attempts, appended)
//   slurm/            batch scripts and the submissions log (Slurm executor)
//   .lock             held (flock) by the process that changes plan.json or runs jobs
//
// Re-running a sweep into its directory is how it resumes; a changed spec (say, one
// more ratio) is accepted: job ids are hashes of their inputs, so finished jobs keep
// their records and only new ones run.
#pragma once

#include <string>
#include <vector>

#include "schedulers/job_graph.h"
#include "schedulers/sweep_spec.h"

namespace moelab::schedulers {

class ResultsDir {
 public:
  // Creates or updates `dir` for `spec`: folders, sweep.yaml, plan.json (atomically).
  static ResultsDir prepare(const std::string& dir, const SweepSpec& spec, const JobGraph& graph);
  // Opens a directory `prepare` made (status, run-job, reports). InputError naming
  // the directory if it is not one.
  static ResultsDir open(const std::string& dir);

  const std::string& path() const { return path_; }  // absolute
  const std::string& name() const { return name_; }  // the sweep's name
  const JobGraph& graph() const { return graph_; }
  std::string log_file(const std::string& job_id) const;  // relative to path()

 private:
  std::string path_, name_;
  JobGraph graph_;
};

// An exclusive advisory lock on <dir>/.lock, released on destruction or when the
// process dies (even by kill -9). Throws InputError if another process holds it.
class SweepLock {
 public:
  explicit SweepLock(const std::string& dir);
  ~SweepLock();
  SweepLock(const SweepLock&) = delete;
  SweepLock& operator=(const SweepLock&) = delete;

 private:
  int fd_ = -1;
};

// Removes a job's output (file or folder) and the "<output>.tmp-*" and "<id>.*.tmp-*"
// leftovers (temp names of its main and side outputs) of a killed attempt, so that an
// unfinished job starts clean. Finished side outputs ("<id>.ckpt", resume state) stay.
void remove_job_output(const std::string& results_dir, const Job& job);

}  // namespace moelab::schedulers
