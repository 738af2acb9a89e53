// The Slurm executor (`moelab submit`): one job array per stage (calibrate, score,
// prune, finetune, eval) of the jobs still to do, written from the template
// slurm/array_job.sbatch.in, submitted with sbatch; stages chained with
// --dependency=afterok. Each array task runs `moelab sweep run-job`, which starts the
// job (mpirun or srun inside the allocation) and writes its record like the local
// executor does. Submitting returns at once; `moelab status` follows the sweep.
//
// Files: slurm/submit-NNN/<stage>.sbatch and <stage>.jobs.jsonl (task i = line i),
// slurm/submit-NNN/submit.sh (the sbatch commands, runnable by hand after a dry run),
// slurm/submissions.jsonl (array job id -> job ids per task, for status and resume).
//
// Resume: jobs with a "done" record are never submitted; jobs whose task is running
// are not submitted again, and what depends on them waits for those tasks
// (afterok:<array>_<task>); tasks still queued are cancelled and submitted again with
// the missing jobs (they may wait on an earlier array that can no longer succeed).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "schedulers/results_dir.h"
#include "schedulers/sweep_spec.h"

namespace moelab::schedulers {

struct SlurmOptions {
  SlurmSettings settings;
  std::string template_file;  // default: the source tree's slurm/array_job.sbatch.in
  std::string moelab;         // the moelab binary the scripts run (default: this one)
  bool dry_run = false;       // write scripts only
  bool resume = false;        // accept a sweep with tasks still in the queue
  bool validate = true;       // `sbatch --test-only` each stage before submitting any
};

struct StageSubmission {
  results::JobKind kind = results::JobKind::kCalibrate;  // of its jobs
  std::string array_job, script;
  std::string stage() const { return to_string(kind); }  // its word: file names, shell variables
  std::vector<std::string> ids;  // job id of task i
  std::vector<std::string> dependencies;
};

struct SlurmSubmission {
  std::string dir;  // slurm/submit-NNN, relative to the results dir
  std::vector<StageSubmission> stages;
  int done_before = 0, in_flight = 0;
};

// The template shipped with moelab.
std::string default_slurm_template();

// `spec` names the keys in errors (resources.<kind>). InputError before anything is
// submitted when the template, the resources or sbatch itself is wrong.
SlurmSubmission submit_slurm(const ResultsDir& dir, const SweepSpec& spec, const SlurmOptions& opts,
                             const std::function<void(const std::string&)>& progress);

// The previous submissions (slurm/submissions.jsonl).
std::vector<StageSubmission> read_submissions(const std::string& results_dir);

// Job ids whose Slurm task is queued or running now, with "<array>_<task>" for each.
std::map<std::string, std::string> jobs_in_flight(const std::string& results_dir,
                                                  const std::map<std::string, std::string>& queue);

}  // namespace moelab::schedulers
