#include "schedulers/sweep_status.h"

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "results/job_record.h"
#include "schedulers/slurm_executor.h"
#include "schedulers/slurm_queue.h"

namespace moelab::schedulers {
namespace {

// A live process, not a zombie (an orphan whose parent died is a zombie until init
// reaps it, and some container inits never do).
bool process_alive(int64_t pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const size_t paren = text.rfind(')');  // "pid (comm) S ...": comm may hold spaces
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'Z';
}

}  // namespace

int SweepStatus::count(const std::string& state) const {
  int n = 0;
  for (const auto& j : jobs) n += j.state == state;
  return n;
}

SweepStatus sweep_status(const ResultsDir& dir, bool read_slurm) {
  SweepStatus st;
  const auto records = results::read_job_records(dir.path());
  const auto markers = results::read_running_markers(dir.path());
  std::map<std::string, std::string> queue, in_flight;
  if (read_slurm && std::filesystem::exists(dir.path() + "/slurm/submissions.jsonl")) {
    try {
      queue = slurm_queue();
      in_flight = jobs_in_flight(dir.path(), queue);
      st.slurm_read = true;
    } catch (const InputError& e) {
      st.slurm_error = e.what();
    }
  }
  const std::string host = results::host_name();
  for (const auto& j : dir.graph().jobs) {
    JobState js{j.id, j.kind, j.label, "pending", ""};
    auto rec = records.find(j.id);
    if (rec != records.end() && rec->second.state == "done") {
      js.state = "done";
    } else if (auto f = in_flight.find(j.id); f != in_flight.end()) {
      js.state = queue.at(f->second) == "PENDING" ? "queued" : "running";
      js.detail = "Slurm " + f->second;
    } else if (auto m = markers.find(j.id);
               m != markers.end() && m->second.slurm_job.empty() && m->second.host == host &&
               process_alive(m->second.pid)) {
      js.state = "running";
      js.detail = "pid " + std::to_string(m->second.pid);
    } else if (rec != records.end()) {
      js.state = "failed";
      js.detail = "exit " + std::to_string(rec->second.exit_code) + ", " + rec->second.log;
    } else if (markers.count(j.id)) {
      js.detail = "interrupted";
    }
    st.jobs.push_back(js);
  }
  for (const auto& [stage, word] : results::kJobKindWords) {
    StageCounts c;
    c.stage = stage;
    bool any = false;
    for (const auto& j : st.jobs) {
      if (j.kind != stage) continue;
      any = true;
      if (j.state == "done") ++c.done;
      else if (j.state == "running") ++c.running;
      else if (j.state == "queued") ++c.queued;
      else if (j.state == "failed") ++c.failed;
      else ++c.pending;
    }
    if (any) st.stages.push_back(c);
  }
  return st;
}

}  // namespace moelab::schedulers
