// moelab status: done / running / queued / failed / pending per stage of a sweep.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "runner/cli/commands.h"
#include "schedulers/sweep_status.h"

namespace moelab::cli {
namespace {

struct StatusArgs {
  std::string results;
  bool json = false, no_slurm = false, all = false;
};

void run_status(const StatusArgs& a) {
  const auto dir = schedulers::ResultsDir::open(a.results);
  const auto st = schedulers::sweep_status(dir, !a.no_slurm);
  if (a.json) {
    nlohmann::json jobs = nlohmann::json::array(), stages = nlohmann::json::array();
    for (const auto& j : st.jobs)
      jobs.push_back({{"id", j.id}, {"kind", to_string(j.kind)}, {"label", j.label}, {"state", j.state}, {"detail", j.detail}});
    for (const auto& s : st.stages)
      stages.push_back({{"stage", to_string(s.stage)}, {"done", s.done}, {"running", s.running}, {"queued", s.queued},
                        {"failed", s.failed}, {"pending", s.pending}});
    std::cout << nlohmann::json{{"name", dir.name()}, {"results", dir.path()}, {"slurm_read", st.slurm_read},
                                {"stages", stages}, {"jobs", jobs}}
                     .dump(1)
              << "\n";
    return;
  }
  std::printf("sweep %s (%s): %zu jobs, %d done\n", dir.name().c_str(), dir.path().c_str(), st.jobs.size(),
              st.count("done"));
  if (!st.slurm_error.empty()) std::printf("(Slurm queue not read: %s)\n", st.slurm_error.c_str());
  std::printf("%-10s %6s %8s %7s %7s %8s\n", "stage", "done", "running", "queued", "failed", "pending");
  for (const auto& s : st.stages)
    std::printf("%-10s %6d %8d %7d %7d %8d\n", to_string(s.stage), s.done, s.running, s.queued, s.failed, s.pending);
  for (const auto& j : st.jobs)
    if (a.all || j.state == "failed" || j.state == "running")
      std::printf("%-8s %s  %s%s\n", j.state.c_str(), j.id.c_str(), j.label.c_str(),
                  j.detail.empty() ? "" : ("  (" + j.detail + ")").c_str());
}

}  // namespace

void add_status_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "status",
      "Where a sweep stands: per stage, how many jobs are done, running, queued (Slurm), failed or pending,\n"
      "then the running and failed jobs with their logs. Reads the results directory's job records and,\n"
      "for a submitted sweep, Slurm's queue (one squeue call).\n\n"
      "Examples:\n"
      "  moelab sweep run configs/quickstart.yaml --results results/quickstart\n"
      "  moelab status results/quickstart\n"
      "  moelab status results/quickstart --all --json");
  auto a = std::make_shared<StatusArgs>();
  cmd->add_option("results", a->results, "a sweep's results directory")->required();
  cmd->add_flag("--json", a->json, "machine-readable output");
  cmd->add_flag("--all", a->all, "list every job, not only running and failed ones");
  cmd->add_flag("--no-slurm", a->no_slurm, "do not query squeue");
  cmd->callback([a] { run_status(*a); });
}

}  // namespace moelab::cli
