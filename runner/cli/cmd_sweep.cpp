// moelab sweep: grids of experiments from a YAML spec (schedulers/sweep_spec.h).
// `sweep plan` validates the spec and prints the job graph and its size before
// anything runs; `sweep run` runs it here (local executor); `sweep run-job` is what a
// Slurm array task runs (moelab submit writes the scripts).
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "runner/cli/commands.h"
#include "schedulers/job_graph.h"
#include "schedulers/job_process.h"
#include "schedulers/local_executor.h"
#include "schedulers/orphan_jobs.h"
#include "schedulers/resource_check.h"
#include "schedulers/resource_plan.h"
#include "schedulers/results_dir.h"

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
    const nlohmann::json jobs = schedulers::graph_to_json(g);
    nlohmann::json out = {{"name", spec.name}, {"grid_points", grid.size()}, {"jobs", jobs}};
    if (a.json_out == "-")
      std::cout << out.dump(1) << "\n";
    else
      write_file_atomic(a.json_out, out.dump(1));
    return;
  }
  std::cout << "sweep " << spec.name << ": " << grid.size() << " grid points -> " << g.jobs.size() << " jobs ("
            << g.count(results::JobKind::kCalibrate) << " calibrate, " << g.count(results::JobKind::kScore) << " score, " << g.count(results::JobKind::kPrune)
            << " prune, " << g.count(results::JobKind::kFinetune) << " finetune, " << g.count(results::JobKind::kEval) << " eval)\n";
  for (const auto& j : g.jobs) {
    std::string deps;
    for (const auto& d : j.deps) deps += (deps.empty() ? "" : ",") + d;
    std::printf("%-9s %s  %s%s\n", to_string(j.kind), j.id.c_str(), j.label.c_str(),
                deps.empty() ? "" : ("  <- " + deps).c_str());
  }
  // What `sweep run` and `submit` will check (moelab plan-resources).
  for (const auto& m : schedulers::check_calibration_memory(spec, g))
    std::printf("memory    %s  planned %s (%d rank(s) x up to %s) against mem %s: %s\n", m.job_id.c_str(),
                schedulers::format_bytes(m.planned).c_str(), m.ranks, schedulers::format_bytes(m.per_rank).c_str(),
                schedulers::format_bytes(m.granted).c_str(), m.fits() ? "fits" : "DOES NOT FIT");
}

struct SweepRunArgs {
  std::string spec, results;
  schedulers::LocalOptions opts;
  bool no_resource_check = false;
};

void run_sweep_run(const SweepRunArgs& a) {
  const schedulers::SweepSpec spec = schedulers::load_sweep_spec(a.spec);
  const schedulers::JobGraph g = schedulers::build_job_graph(spec);
  if (!a.no_resource_check) schedulers::refuse_jobs_over_memory(spec, g);
  const std::string results = a.results.empty() ? "results/" + spec.name : a.results;
  std::filesystem::create_directories(results);
  schedulers::SweepLock lock(results);  // one executor per sweep; released even by kill -9
  const schedulers::ResultsDir dir = schedulers::ResultsDir::prepare(results, spec, g);
  if (const int n = schedulers::stop_orphan_jobs(dir.path()))
    spdlog::warn("stopped {} process(es) left running by an earlier, killed executor", n);
  if (const int n = schedulers::remove_stale_job_temps(dir.path()))
    spdlog::info("removed {} half-written job file(s) of an earlier, killed executor", n);
  spdlog::info("sweep {}: {} jobs, results in {}", spec.name, g.jobs.size(), dir.path());
  const auto out = schedulers::run_local(dir, a.opts, [](const std::string& line) { spdlog::info("{}", line); });
  spdlog::info("sweep {}: {} jobs run now, {} done earlier, {} failed, {} blocked by a failure", spec.name, out.done,
               out.done_before, out.failed, out.blocked);
  if (!out.ok())
    throw InputError(dir.path(), std::to_string(out.failed) + " job(s) failed (moelab status " + dir.path() +
                                     " lists them; re-run to retry only what is missing)");
}

struct RunJobArgs {
  std::string results, jobs_file, launcher = "mpirun", srun_mpi = "pmix";
  int64_t index = 0;
};

volatile sig_atomic_t g_child = 0;
void forward_signal(int sig) {
  if (g_child > 0) ::kill(static_cast<pid_t>(g_child), sig);
}

void run_sweep_run_job(const RunJobArgs& a) {
  std::ifstream in(a.jobs_file);
  if (!in) throw InputError(a.jobs_file, "cannot read the job list");
  std::string line;
  for (int64_t i = 0; i <= a.index; ++i)
    if (!std::getline(in, line)) throw InputError(a.jobs_file, "has no job " + std::to_string(a.index));
  const schedulers::Job job = schedulers::job_from_json(nlohmann::json::parse(line, nullptr, false), a.jobs_file);
  auto done = [&](const std::string& id) {
    const auto r = results::read_job_record(a.results, id);
    return r && r->state == "done";
  };
  if (done(job.id)) {
    spdlog::info("{} ({}) is already done", job.label, job.id);
    return;
  }
  for (const auto& d : job.deps)
    if (!done(d))
      throw InputError(a.results, "job " + job.id + " needs job " + d + ", which has not finished");
  std::string slurm_job;
  if (const char* arr = std::getenv("SLURM_ARRAY_JOB_ID"))
    slurm_job = std::string(arr) + "_" + (std::getenv("SLURM_ARRAY_TASK_ID") ? std::getenv("SLURM_ARRAY_TASK_ID") : "0");
  else if (const char* id = std::getenv("SLURM_JOB_ID"))
    slurm_job = id;
  schedulers::remove_job_output(a.results, job);
  schedulers::Attempt attempt(a.results, job, slurm_job.empty() ? "local" : "slurm", slurm_job);
  schedulers::LaunchSettings how;
  how.launcher = a.launcher;
  how.srun_mpi = a.srun_mpi;
  const pid_t pid = schedulers::start_process(schedulers::job_command(job, a.results, how),
                                              a.results + "/logs/" + job.id + ".log",
                                              "== moelab sweep run-job: " + job.label + " (job " + job.id +
                                                  (slurm_job.empty() ? "" : ", Slurm " + slurm_job) + ")");
  // USR1 (the batch script's "time is nearly up") goes on to the job, which checkpoints.
  g_child = pid;
  ::signal(SIGUSR1, forward_signal);
  ::signal(SIGTERM, forward_signal);
  attempt.begin(pid);
  spdlog::info("running {} ({}), log {}/logs/{}.log", job.label, job.id, a.results, job.id);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  const results::JobRecord r = attempt.finish(schedulers::exit_code_of(st));
  if (r.state != "done")
    throw InputError(a.results + "/" + r.log, job.label + " failed (exit " + std::to_string(r.exit_code) + ")");
  spdlog::info("{} done in {:.1f} s", job.label, r.seconds);
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
      "one. Job ids are stable hashes of their inputs. Each calibration job's planned memory (moelab\n"
      "plan-resources, summed over its ranks) is shown against its resources' mem.\n\n"
      "Examples:\n"
      "  moelab sweep plan configs/quickstart.yaml\n"
      "  moelab sweep plan configs/quickstart.yaml --json plan.json");
  auto a = std::make_shared<SweepPlanArgs>();
  plan->add_option("spec", a->spec, "sweep spec (YAML)")->required();
  plan->add_option("--json", a->json_out, "write the graph as JSON to this file (- for stdout)");
  plan->callback([a] { run_sweep_plan(*a); });

  auto* run = cmd->add_subcommand(
      "run",
      "Run a sweep on this machine: each job as its own process (`mpirun -np <ranks> moelab ...` for\n"
      "multi-rank jobs), dependencies first, at most --jobs at once. Outputs, job records and logs go to\n"
      "--results (default results/<sweep name>) with the spec copied in. A finished job is recorded\n"
      "atomically and never run again: after a crash, Ctrl-C or kill -9, run the same command to do only\n"
      "what is missing. A failed job stops only the jobs that need it; the exit status is nonzero.\n"
      "Before anything runs, each calibration job's planned memory (moelab plan-resources, summed over its\n"
      "ranks) is checked against its resources' mem; a job that cannot fit stops the sweep.\n\n"
      "Examples:\n"
      "  moelab sweep run configs/quickstart.yaml\n"
      "  moelab sweep run configs/quickstart.yaml --results runs/q1 --jobs 2 --max-ranks 4\n"
      "  moelab status runs/q1");
  auto r = std::make_shared<SweepRunArgs>();
  run->add_option("spec", r->spec, "sweep spec (YAML)")->required();
  run->add_option("--results", r->results, "results directory (default: results/<sweep name>)");
  run->add_option("--jobs", r->opts.max_jobs, "jobs running at once")->check(CLI::PositiveNumber);
  run->add_option("--max-ranks", r->opts.max_ranks, "ranks running at once over all jobs (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  run->add_flag("--no-resource-check", r->no_resource_check,
                "run even when a calibration job's planned memory (moelab plan-resources) exceeds its mem");
  run->callback([r] { run_sweep_run(*r); });

  auto* run_job = cmd->add_subcommand(
      "run-job",
      "Run one job of a submitted sweep and record it (what the Slurm batch scripts call; task i runs\n"
      "line i of --jobs-file). Skips a job that is already done.");
  auto j = std::make_shared<RunJobArgs>();
  run_job->add_option("results", j->results, "results directory")->required();
  run_job->add_option("--jobs-file", j->jobs_file, "JSON lines, one job each")->required();
  run_job->add_option("--index", j->index, "which line (0-based)")->required()->check(CLI::NonNegativeNumber);
  run_job->add_option("--launcher", j->launcher, "mpirun or srun (multi-rank jobs)")
      ->check(CLI::IsMember({"mpirun", "srun"}));
  run_job->add_option("--srun-mpi", j->srun_mpi, "srun's --mpi plugin (pmix, pmi2, ...)");
  run_job->callback([j] { run_sweep_run_job(*j); });
}

}  // namespace moelab::cli
