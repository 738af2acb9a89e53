#include "schedulers/local_executor.h"

#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <set>

#include "core/common/error.h"

namespace moelab::schedulers {

SweepOutcome run_local(const ResultsDir& dir, const LocalOptions& opts,
                       const std::function<void(const std::string&)>& progress) {
  const JobGraph& g = dir.graph();
  std::set<std::string> done, failed;  // failed: failed now, or blocked by a failure
  for (const auto& [id, r] : results::read_job_records(dir.path()))
    if (r.state == "done") done.insert(id);
  SweepOutcome out;
  std::vector<const Job*> waiting;
  for (const auto& j : g.jobs) {
    if (done.count(j.id))
      ++out.done_before;
    else
      waiting.push_back(&j);
  }
  const int total = static_cast<int>(g.jobs.size());
  auto status = [&] {
    char buf[96];
    std::snprintf(buf, sizeof buf, "[%d/%d done, %d failed]", static_cast<int>(done.size()), total, out.failed);
    return std::string(buf);
  };
  struct Running {
    Attempt attempt;
    int64_t ranks;
  };
  std::map<pid_t, Running> running;
  int64_t ranks_in_use = 0;
  while (!waiting.empty() || !running.empty()) {
    // Start what can start, in graph order (dependencies first).
    for (auto it = waiting.begin(); it != waiting.end();) {
      const Job& j = **it;
      bool blocked = false, ready = true;
      for (const auto& d : j.deps) {
        blocked |= failed.count(d) > 0;
        ready &= done.count(d) > 0;
      }
      if (blocked) {
        failed.insert(j.id);
        ++out.blocked;
        progress(status() + " blocked  " + j.label + " (a job it needs failed)");
        it = waiting.erase(it);
        continue;
      }
      const bool fits = running.empty() ||
                        (static_cast<int>(running.size()) < opts.max_jobs &&
                         (opts.max_ranks <= 0 || ranks_in_use + j.resources.ranks <= opts.max_ranks));
      if (!ready || !fits) {
        ++it;
        continue;
      }
      remove_job_output(dir.path(), j);
      Attempt attempt(dir.path(), j, "local");
      const pid_t pid = start_process(job_command(j, dir.path(), opts.launch), dir.path() + "/" + dir.log_file(j.id),
                                      "== moelab sweep: " + j.label + " (job " + j.id + ")");
      attempt.begin(pid);
      running.emplace(pid, Running{std::move(attempt), j.resources.ranks});
      ranks_in_use += j.resources.ranks;
      progress(status() + " started  " + j.label + " (" + j.id + ", " + std::to_string(j.resources.ranks) +
               " rank" + (j.resources.ranks > 1 ? "s" : "") + ")");
      it = waiting.erase(it);
    }
    if (running.empty()) continue;  // everything left was blocked
    int st = 0;
    const pid_t pid = ::waitpid(-1, &st, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("waitpid failed while running the sweep");
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const results::JobRecord r = it->second.attempt.finish(exit_code_of(st));
    ranks_in_use -= it->second.ranks;
    running.erase(it);
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f s", r.seconds);
    if (r.state == "done") {
      done.insert(r.id);
      ++out.done;
      progress(status() + " done     " + r.label + " (" + secs + ")");
    } else {
      failed.insert(r.id);
      ++out.failed;
      progress(status() + " FAILED   " + r.label + " (exit " + std::to_string(r.exit_code) + ", see " +
               dir.path() + "/" + r.log + ")");
    }
  }
  return out;
}

}  // namespace moelab::schedulers
