// moelab submit: a sweep to Slurm as one job array per stage (schedulers/slurm_executor.h).
#include <filesystem>

#include "core/common/error.h"
#include "core/common/log.h"
#include "runner/cli/commands.h"
#include "schedulers/job_graph.h"
#include "schedulers/resource_check.h"
#include "schedulers/results_dir.h"
#include "schedulers/slurm_executor.h"

namespace moelab::cli {
namespace {

struct SubmitArgs {
  std::string spec, results, partition, account, launcher;
  int64_t throttle = -1;
  bool no_resource_check = false;
  std::vector<std::string> sbatch_args;
  schedulers::SlurmOptions opts;
};

void run_submit(SubmitArgs a) {
  const schedulers::SweepSpec spec = schedulers::load_sweep_spec(a.spec);
  const schedulers::JobGraph g = schedulers::build_job_graph(spec);
  if (!a.no_resource_check) schedulers::refuse_jobs_over_memory(spec, g);
  const std::string results = a.results.empty() ? "results/" + spec.name : a.results;
  a.opts.settings = spec.slurm;
  if (!a.partition.empty()) a.opts.settings.partition = a.partition;
  if (!a.account.empty()) a.opts.settings.account = a.account;
  if (!a.launcher.empty()) a.opts.settings.launcher = a.launcher;
  if (a.throttle >= 0) a.opts.settings.throttle = a.throttle;
  for (const auto& s : a.sbatch_args) a.opts.settings.sbatch_args.push_back(s);
  std::filesystem::create_directories(results);
  schedulers::SweepLock lock(results);
  const schedulers::ResultsDir dir = schedulers::ResultsDir::prepare(results, spec, g);
  const auto sub = schedulers::submit_slurm(dir, spec, a.opts, [](const std::string& l) { spdlog::info("{}", l); });
  int n = 0;
  for (const auto& s : sub.stages) n += static_cast<int>(s.ids.size());
  spdlog::info("sweep {}: {} jobs {}, {} done earlier, {} still queued or running; scripts in {}/{}", spec.name, n,
               a.opts.dry_run ? "written" : "submitted", sub.done_before, sub.in_flight, dir.path(), sub.dir);
  if (!a.opts.dry_run) spdlog::info("follow it with: moelab status {}", dir.path());
}

}  // namespace

void add_submit_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "submit",
      "Submit a sweep to Slurm: one job array per stage (calibrate, score, prune, finetune, eval) written\n"
      "from slurm/array_job.sbatch.in, stages chained with --dependency=afterok, per-stage resources from\n"
      "the spec's `resources` (ranks -> --ntasks, mem, time, gpus), at most --throttle tasks of an array\n"
      "at once (--array=0-N%K). Every stage's request is checked with `sbatch --test-only` before anything\n"
      "is queued. Tasks are --requeue'able; near the time limit a task tells its job to checkpoint\n"
      "(fine-tuning and calibration do) and requeues itself. Returns once submitted; `moelab status`\n"
      "follows the sweep.\n"
      "Jobs already done are never submitted again. After a failure or an scancel, --resume submits only\n"
      "what is missing (tasks still queued are kept and waited for). Before that, each calibration job's\n"
      "planned memory (moelab plan-resources, summed over its ranks) is checked against its mem.\n\n"
      "Examples:\n"
      "  moelab submit configs/quickstart.yaml --dry-run          # write the scripts only\n"
      "  moelab submit configs/paper/mixtral-8x7b-tables1-2.yaml --partition gpu --throttle 16 --results runs/t1\n"
      "  moelab submit configs/paper/mixtral-8x7b-tables1-2.yaml --results runs/t1 --resume");
  auto a = std::make_shared<SubmitArgs>();
  cmd->add_option("spec", a->spec, "sweep spec (YAML)")->required();
  cmd->add_option("--results", a->results, "results directory (default: results/<sweep name>)");
  cmd->add_flag("--dry-run", a->opts.dry_run, "write the batch scripts and submit.sh, submit nothing");
  cmd->add_flag("--resume", a->opts.resume, "submit what is missing while earlier tasks are still queued");
  cmd->add_option("--partition", a->partition, "Slurm partition (overrides slurm.partition)");
  cmd->add_option("--account", a->account, "Slurm account (overrides slurm.account)");
  cmd->add_option("--throttle", a->throttle, "tasks of one array running at once (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--launcher", a->launcher, "mpirun or srun, for multi-rank jobs")
      ->check(CLI::IsMember({"mpirun", "srun"}));
  cmd->add_option("--sbatch-arg", a->sbatch_args, "extra sbatch option for every array (repeatable)");
  cmd->add_option("--template", a->opts.template_file, "batch script template (default: slurm/array_job.sbatch.in)");
  cmd->add_flag("--no-resource-check", a->no_resource_check,
                "submit even when a calibration job's planned memory (moelab plan-resources) exceeds its mem");
  cmd->callback([a] { run_submit(*a); });
}

}  // namespace moelab::cli
