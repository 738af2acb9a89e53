// Running one job of a sweep as a process, shared by the executors: its command line
// (`mpirun -np N moelab ...`, `srun ...` or plain `moelab ...`), its start with the
// output appended to the job's log, and the bookkeeping around an attempt (running
// marker, clean output, record written once the process has exited).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "results/job_record.h"
#include "schedulers/job_graph.h"

namespace moelab::schedulers {

struct LaunchSettings {
  std::string moelab;              // the moelab binary (default: this process's)
  std::string launcher = "mpirun";  // mpirun | srun (multi-rank jobs); 1-rank jobs run directly
  std::string srun_mpi = "pmix";     // srun --mpi=<this>
};

// The path of the running moelab binary (/proc/self/exe).
std::string this_executable();

std::vector<std::string> job_command(const Job& job, const std::string& results_dir, const LaunchSettings& how);

// Forks and execs `cmd` with stdout and stderr appended to `log_path` (after a header
// line). The child gets SIGTERM if this process dies (even by kill -9), so no job
// outlives its executor. Returns the child's pid; throws InputError if the log cannot
// be opened.
pid_t start_process(const std::vector<std::string>& cmd, const std::string& log_path, const std::string& header);

// Runs `cmd` to completion (no shell), capturing stdout and stderr together.
// exit_code is 127 if the program cannot be run.
struct CommandResult {
  int exit_code = 0;
  std::string output;
};
CommandResult run_command(const std::vector<std::string>& cmd);

// Exit status of a finished child as one number: its exit code, or 128 + signal.
int exit_code_of(int wait_status);

// One attempt at a job: begin() cleans the job's output and writes the running
// marker; finish() writes the record ("done" only if the process exited 0 and the
// output exists) and returns it.
class Attempt {
 public:
  Attempt(std::string results_dir, Job job, std::string executor, std::string slurm_job = "");
  void begin(pid_t pid);
  results::JobRecord finish(int exit_code);
  const Job& job() const { return job_; }

 private:
  std::string dir_, executor_, slurm_job_, started_;
  Job job_;
  int64_t attempt_ = 1;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace moelab::schedulers
