// moelab sweep: grids of experiments from a YAML spec (schedulers/sweep_spec.h).
// `sweep plan` validates the spec and prints the job graph and its size before
// anything runs.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/atomic_output.h"
#include "common/error.h"
#include "schedulers/job_graph.h"

namespace moelab::cli {
namespace {

struct SweepPlanArgs {
  std::string spec, json_out;
};

void run_sweep_plan(const SweepPlanArgs& a) {
  const schedulers::SweepSpec spec = schedulers::load_sweep_spec(a.spec);
  const auto grid = schedulers::expand_grid(spec);
  const schedulers::JobGraph g = schedulers::build_job_graph(spec);
  if (!a.json_out.empty()) {
    nlohmann::json jobs = nlohmann::json::array();
    for (const auto& j : g.jobs)
      jobs.push_back({{"id", j.id},
                      {"kind", j.kind},
                      {"label", j.label},
                      {"deps", j.deps},
                      {"args", j.args},
                      {"output", j.output},
                      {"resources",
                       {{"ranks", j.resources.ranks},
                        {"gpus", j.resources.gpus},
                        {"mem", j.resources.mem},
                        {"time", j.resources.time}}}});
    nlohmann::json out = {{"name", spec.name}, {"grid_points", grid.size()}, {"jobs", jobs}};
    if (a.json_out == "-")
      std::cout << out.dump(1) << "\n";
    else
      write_file_atomic(a.json_out, out.dump(1));
    return;
  }
  std::cout << "sweep " << spec.name << ": " << grid.size() << " grid points -> " << g.jobs.size() << " jobs ("
            << g.count("calibrate") << " calibrate, " << g.count("score") << " score, " << g.count("prune")
            << " prune, " << g.count("finetune") << " finetune, " << g.count("eval") << " eval)\n";
  for (const auto& j : g.jobs) {
    std::string deps;
    for (const auto& d : j.deps) deps += (deps.empty() ? "" : ",") + d;
    std::printf("%-9s %s  %s%s\n", j.kind.c_str(), j.id.c_str(), j.label.c_str(),
                deps.empty() ? "" : ("  <- " + deps).c_str());
  }
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sweep",
      "Grids of experiments (ratios x criteria x procedures x recovery) from a YAML spec\n"
      "(format: schedulers/sweep_spec.h; ready specs in configs/).");
  cmd->require_subcommand(1);
  auto* plan = cmd->add_subcommand(
      "plan",
      "Validate a sweep spec and print its job graph: one calibration per (model, calibration set) shared\n"
      "by every criterion that can use it, one scoring job per calibration, a prune job per grid point,\n"
      "fine-tuning where recovery asks for it, evaluation of every final model and once of the unpruned\n"
      "one. Job ids are stable hashes of their inputs.\n\n"
      "Examples:\n"
      "  moelab sweep plan configs/quickstart.yaml\n"
      "  moelab sweep plan configs/quickstart.yaml --json plan.json");
  auto a = std::make_shared<SweepPlanArgs>();
  plan->add_option("spec", a->spec, "sweep spec (YAML)")->required();
  plan->add_option("--json", a->json_out, "write the graph as JSON to this file (- for stdout)");
  plan->callback([a] { run_sweep_plan(*a); });
}

}  // namespace moelab::cli
