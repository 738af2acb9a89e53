// Reading Slurm's queue: one `squeue` call per poll (the field's advice: thousands of
// per-job queries stall a cluster's controller), array tasks one per line.
#pragma once

#include <map>
#include <string>

namespace moelab::schedulers {

// "<array job id>_<task>" (or "<job id>") -> Slurm state (PENDING, RUNNING, ...), for
// the caller's jobs in the queue. Throws InputError if squeue cannot be run.
std::map<std::string, std::string> slurm_queue();

// Whether a queue state means the task will still run or is running.
bool slurm_state_in_flight(const std::string& state);

}  // namespace moelab::schedulers
