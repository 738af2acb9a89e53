#include "schedulers/slurm_queue.h"

#include <sstream>

#include "core/common/error.h"
#include "schedulers/job_process.h"

namespace moelab::schedulers {

std::map<std::string, std::string> slurm_queue() {
  // -r: one line per array task, pending ones included; %i is "<array>_<task>".
  const CommandResult r = run_command({"squeue", "--me", "-h", "-r", "-o", "%i|%T"});
  if (r.exit_code != 0) {
    const std::string first = r.output.substr(0, r.output.find('\n'));
    throw InputError("squeue", "cannot read the Slurm queue: " + (first.empty() ? "exit code " + std::to_string(r.exit_code) : first));
  }
  std::map<std::string, std::string> out;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    const size_t bar = line.find('|');
    if (bar == std::string::npos) continue;
    out[line.substr(0, bar)] = line.substr(bar + 1);
  }
  return out;
}

bool slurm_state_in_flight(const std::string& s) {
  return s == "PENDING" || s == "RUNNING" || s == "CONFIGURING" || s == "COMPLETING" || s == "REQUEUED" ||
         s == "REQUEUE_HOLD" || s == "REQUEUE_FED" || s == "RESIZING" || s == "SUSPENDED" || s == "STAGE_OUT" ||
         s == "SIGNALING";
}

}  // namespace moelab::schedulers
