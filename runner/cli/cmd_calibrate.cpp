// moelab calibrate: one forward pass over a calibration set that collects every
// statistic the requested criteria need, distributed over ranks (experts by expert
// parallelism, batches by data parallelism), all-reduced, and written by rank 0 to
// one HDF5 file (results/stats_schema.md).
#include <algorithm>
#include <cstdlib>
#include <set>

#include "cluster/alltoall_dispatcher.h"
#include "cluster/communicator.h"
#include "cluster/cuda_support.h"
#include "cluster/data_parallel.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/layer_loader.h"
#include "criteria/family.h"
#include "criteria/registry.h"
#include "results/stat_groups.h"
#include "results/stats_file.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/layerwise_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/calibrate/collect_statistics.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/layerwise/layerwise_calibration.h"

namespace moelab::cli {
namespace {

struct CalibrateArgs {
  ModelOptions model;
  jobs::CalibrationSpec data;
  std::vector<std::string> criteria, collect;
  std::string out, comm = "auto";
  int64_t batch_size = 8;
  bool overwrite = false;
  jobs::NaeeOptions naee;
  std::vector<double> power_exponents = results::default_power_exponents();
  LayerwiseArgs lw;
  int64_t checkpoint_every = 0;
  std::string checkpoint_dir;
};

// The exponents of power_sums: 1 to 8 distinct values >= 0, in the order given.
void check_power_exponents(const std::vector<double>& x) {
  if (x.empty() || x.size() > 8) throw InputError("--power-exponents", "give 1 to 8 exponents, e.g. 0,1,2,3");
  for (size_t i = 0; i < x.size(); ++i) {
    if (!(x[i] >= 0 && x[i] <= 16))
      throw InputError("--power-exponents", std::to_string(x[i]) + " is outside [0, 16]");
    for (size_t j = 0; j < i; ++j)
      if (x[j] == x[i]) throw InputError("--power-exponents", std::to_string(x[i]) + " is given twice");
  }
}

void run_calibrate(const CalibrateArgs& a) {
  // What the process holds before calibrating (libtorch, MPI, arguments): the
  // memory budget counts from here.
  const int64_t baseline = peak_resident_bytes();
  auto comm = cluster::world(a.comm);
  refuse_existing_output(a.out, a.overwrite);
  std::set<std::string> groups = criteria::stat_groups_needed(a.criteria);
  // The default set leaves out what needs the whole model when going layer by layer.
  // (and so does a resumable pass: a second pass is not checkpointed).
  if ((a.lw.layerwise || a.checkpoint_every > 0) && a.criteria.empty())
    groups = results::without_whole_model_groups(groups);
  for (const auto& g : a.collect) {
    results::check_stat_group_name(g, "--collect");
    groups.insert(g);
  }
  if (!(a.naee.ratio >= 0 && a.naee.ratio < 1)) throw InputError("--naee-ratio", "must be in [0, 1)");
  check_power_exponents(a.power_exponents);
  jobs::LayerwiseOptions lw;
  if (a.lw.layerwise) {
    jobs::check_layerwise_groups(groups);
    lw = a.lw.options(std::filesystem::absolute(a.out).parent_path().string());
  }
  if (a.checkpoint_every > 0) jobs::check_resumable_groups(groups);
  // Family members named here get their exponents.
  const std::vector<double> exponents = criteria::power_exponents_for(a.criteria, a.power_exponents);
  check_power_exponents(exponents);
  if (!a.lw.layerwise) {  // the whole model: refused before the data and the model are read
    jobs::MemoryCheck mc;
    mc.command = "moelab calibrate";
    mc.query.batch_size = a.batch_size;
    mc.query.seq_len = a.data.seq_len;
    mc.query.num_samples = a.data.num_samples;
    mc.query.groups = groups;
    mc.statistics = true;
    mc.offer_layerwise = true;
    mc.offer_ranks = true;
    a.model.check_memory(mc, comm->size());
  }
  jobs::CalibrationSpec spec = a.data;
  if (spec.tokenizer.empty()) spec.tokenizer = a.model.model_dir;
  const jobs::CalibrationSet set = jobs::load_calibration_set(spec);
  const bool gradients = groups.count(results::stat::kGradients) != 0;
  int64_t targets = 0;
  for (const auto& s : set.sequences) targets += std::max<int64_t>(int64_t(s.size()) - 1, 0);
  if (gradients && targets == 0)  // checked before loading the model
    throw InputError(spec.files[0], "gradients need sequences of at least 2 tokens (no next-token targets)");
  models::LoadOptions load = a.model.load_options();
  std::string list;
  for (const auto& g : groups) list += (list.empty() ? "" : ", ") + g;
  jobs::CollectOptions opts;
  if (a.checkpoint_every > 0) {
    opts.checkpoint.every = a.checkpoint_every;
    opts.checkpoint.dir = a.checkpoint_dir.empty() ? a.out + ".ckpt" : a.checkpoint_dir;
    opts.checkpoint.unit = a.lw.layerwise ? "layer" : "step";
    // What the sums depend on besides the ranks (checked on their own): the token ids,
    // the model, the compute dtype, the batches and the groups.
    std::string settings = std::filesystem::absolute(a.model.model_dir).lexically_normal().string() + "|" +
                           std::string(c10::toString(load.dtype)) + "|batch " + std::to_string(a.batch_size) + "|" + list +
                           (a.lw.layerwise ? "|layerwise" : "");
    for (double x : exponents) settings += "|" + std::to_string(x);
    opts.checkpoint.fingerprint = jobs::calibration_fingerprint(set.sequences, settings);
  }
  jobs::CalibrationCheckpoint(opts.checkpoint, *comm).check();  // refused before any work or log line
  models::MoeModel m;
  if (a.lw.layerwise) {  // a shell: every layer is read when its turn comes
    m = load_layerwise_shell(a.model.model_dir, comm, load, lw);
  } else {
    reuse_freed_blocks();
    m = comm->size() > 1 ? cluster::load_expert_parallel(a.model.model_dir, comm, load)
                         : models::load_model(a.model.model_dir, load);
  }
  for (const auto& s : set.sequences)
    for (int64_t id : s)
      if (id >= m.config.vocab_size)
        throw InputError(spec.files[0], "token id " + std::to_string(id) + " is outside the model's vocabulary (" +
                                            std::to_string(m.config.vocab_size) + ")");
  spdlog::info("calibrating on {} sequences, {} tokens, {} rank(s); collecting {}", set.sequences.size(),
               set.num_tokens, comm->size(), list);
  opts.batch_size = a.batch_size;
  opts.naee = a.naee;
  opts.power_exponents = exponents;
  results::CalibrationStats st;
  try {
    st = a.lw.layerwise ? jobs::collect_statistics_layerwise(m, a.model.model_dir, load, *comm, set, groups, opts, lw)
                     : jobs::collect_statistics(m, *comm, set, groups, opts);
  } catch (const jobs::CalibrationInterrupted& e) {
    // SIGUSR1 (a batch job near its time limit): the checkpoint is saved; exit 75 so
    // that the caller (the sweep's batch script) requeues the same command.
    spdlog::warn("{} in {}; run the same command again to continue", e.what(), opts.checkpoint.dir);
    comm->barrier();
    std::exit(jobs::kExitResumable);
  }
  st.model = a.model.model_dir;
  st.calibration = set.description;
#ifdef MOELAB_VERSION
  st.moelab_version = MOELAB_VERSION;
#endif
  st.seq_len = spec.seq_len;
  st.seed = spec.seed;
  if (comm->rank() == 0) {
    results::write_stats(st, a.out);
    spdlog::info("wrote {}", a.out);
  }
  comm->barrier();
  jobs::CalibrationCheckpoint(opts.checkpoint, *comm).remove();  // the output holds it all now
  report_peak_memory(baseline, lw, m.device);
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Run the model once over a calibration set and store, per MoE layer and expert, every statistic\n"
      "the chosen criteria need (sums in float64, counts in int64) in one HDF5 file for `moelab score`.\n\n"
      "Data: text files (.txt), JSONL (.jsonl, field --text-field) or token ids (.json, {\"input_ids\":\n"
      "[[...]]}); text is tokenized with the model's tokenizer.json, joined with EOS and cut into windows\n"
      "of --seq-len tokens, of which --num-samples are drawn with --seed. Padding never reaches experts.\n"
      "Under mpirun (or --ranks P) experts and batches are spread over ranks and the statistics are\n"
      "all-reduced; the file does not depend on the rank count.\n"
      "Gradient criteria (EGS, EGE, EGO, EGN) add a backward pass of the mean next-token loss; NAEE adds\n"
      "a dense observation (every expert on every token) and, above --naee-budget subsets, one more pass\n"
      "per dropped expert.\n"
      "--layerwise streams one decoder layer at a time from the safetensors (under mpirun, each rank only\n"
      "its own experts): the model is never held whole, and the statistics are the same, bit for bit. It\n"
      "refuses the groups that need the whole model: gradients (EGS, EGE, EGO, EGN), naee (NAEE) and\n"
      "act_outliers (EAO), which its default set leaves out.\n"
      "--checkpoint-every N makes the run resumable: run the same command again after a kill, a time limit\n"
      "or a Slurm preemption and it continues from the last checkpoint (every N batches, or N layers with\n"
      "--layerwise) to the same file, bit for bit.\n\n"
      "Examples:\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --seq-len 256 --num-samples 64 --out stats.h5\n"
      "  moelab --ranks 2 calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EAN,REAP --out stats.h5\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EGE,NAEE --naee-ratio 0.25 --out stats.h5\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EUF --collect dense_outputs,gate_ratios --out stats.h5\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria Family-a2-p3-b1-out --power-exponents 0,1,2,3 "
      "--out stats.h5\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EAN,REAP --layerwise --memory-budget 8G --out stats.h5\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EAN,REAP --layerwise --checkpoint-every 4 --out stats.h5");
  auto a = std::make_shared<CalibrateArgs>();
  a->model.add_to(cmd);
  add_calibration_data_options(cmd, &a->data, "", /*required=*/true);
  cmd->add_option("--criteria", a->criteria,
                  "criteria whose statistics to collect (default: all but the gradient criteria and NAEE, which "
                  "cost a backward pass or a dense pass: name them to get them)")
      ->delimiter(',');
  cmd->add_option("--collect", a->collect,
                  "also collect these statistic groups: usage, act_norms, out_norms, coactivation, token_ids, "
                  "act_moments, hidden_change (EASY-EP), act_outliers (a second pass), gradients (adds a backward "
                  "pass), naee (dense observation), dense_outputs (every expert's output summed over all tokens, "
                  "for moelab merge; dense observation), gate_ratios (histogram of the router's 2nd/1st "
                  "probability, for moelab set-skipping), power_sums (sum of g^a ||v||^p for the criteria family), "
                  "out_moments (per-channel sums of the expert output and its square: MoNE's novices), out_max "
                  "(largest expert output value: super experts, prune --protect-super-experts); comma-separated")
      ->delimiter(',');
  cmd->add_option("--power-exponents", a->power_exponents,
                  "power_sums: the exponents a and p stored for the criteria family Family-aA-pP-bB-V "
                  "(default 0,1,2)")
      ->delimiter(',');
  cmd->add_option("--naee-ratio", a->naee.ratio,
                  "NAEE: fraction of each layer's experts dropped by the subset search (default 0.5)");
  cmd->add_option("--naee-budget", a->naee.budget,
                  "NAEE: most subsets evaluated per layer by enumeration; above it, greedy elimination "
                  "(one pass per dropped expert)")
      ->check(CLI::PositiveNumber);
  add_output_options(cmd, &a->out, &a->overwrite, "output HDF5 file (written atomically)", true);
  add_batch_size_option(cmd, &a->batch_size, "sequences per forward pass");
  add_comm_option(cmd, &a->comm, "communicator under mpirun: auto, mpi, nccl, local");
  a->lw.add_to(cmd, "one decoder layer at a time (see above); not with gradients, naee, act_outliers",
               "that of --out");
  cmd->add_option("--checkpoint-every", a->checkpoint_every,
                  "save the running sums every N steps (a step: one batch on every rank; with --layerwise: one "
                  "decoder layer, and each rank's hidden states are saved too) so that the same command, "
                  "run again after kill -9, a time limit or a preemption, continues from the last save and writes "
                  "the same file, bit for bit, as an uninterrupted run (0: off). Not with gradients, naee or "
                  "act_outliers (which the default set then leaves out)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--checkpoint-dir", a->checkpoint_dir,
                  "with --checkpoint-every: where the checkpoints go (default: <--out>.ckpt); removed once --out is "
                  "written")
      ->needs(cmd->get_option("--checkpoint-every"));
  cmd->callback([a] {
    auto comm = cluster::world(a->comm);
    cluster::run_or_abort(*comm, [&] { run_calibrate(*a); });
  });
}

}  // namespace moelab::cli
