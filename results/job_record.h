// What a sweep knows about each of its jobs, on disk in the results directory:
//   jobs/<id>.json      the outcome of the job's last finished attempt ("done" or
//                       "failed"), written atomically (temp name + rename) after the
//                       job's own outputs are in place: a "done" record is the one
//                       proof that a job finished, and re-runs never redo such a job;
//   jobs/<id>.running   written when an attempt starts (pid, host, Slurm ids), removed
//                       when its record is written. Left behind by a killed executor, it
//                       reads as "interrupted", i.e. still to do.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "results/sweep_plan.h"

namespace moelab::results {

struct JobRecord {
  std::string id;
  std::optional<JobKind> kind;  // the plan's; absent in a hand-made record
  std::string label;
  std::string state;            // "done" | "failed"
  int exit_code = 0;            // of the job's process (128 + signal when killed by one)
  int64_t attempt = 1;          // 1 for the first run, +1 per re-run after a failure
  std::string executor;         // "local" | "slurm"
  std::string host;
  std::string slurm_job;        // "<array job id>_<task>" under Slurm, else empty
  std::string started, finished;  // UTC ISO 8601
  double seconds = 0;
  std::string log;              // the job's log file, relative to the results dir
};

struct RunningMarker {
  std::string id, host, slurm_job, started;
  int64_t pid = 0;
};

// Atomic write of jobs/<id>.json; removes jobs/<id>.running.
void write_job_record(const std::string& results_dir, const JobRecord& r);
// Every record under jobs/, by job id. A record that is not valid JSON or whose state is
// neither done nor failed (impossible through write_job_record) is an InputError naming the
// file. The scheduler (status, re-runs) and `moelab report` read records only through these.
std::map<std::string, JobRecord> read_job_records(const std::string& results_dir);
// One job's record, if it has one.
std::optional<JobRecord> read_job_record(const std::string& results_dir, const std::string& id);

void write_running_marker(const std::string& results_dir, const RunningMarker& m);
std::map<std::string, RunningMarker> read_running_markers(const std::string& results_dir);

// This machine's short host name.
std::string host_name();

}  // namespace moelab::results
