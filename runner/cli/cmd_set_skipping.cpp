// moelab set-skipping: turn on NAEE dynamic skipping (Lu et al. 2024) in a copy of a
// model directory: config.json gets one threshold beta per layer, estimated as NAEE
// does (the median over calibration tokens of the router's 2nd/1st probability, from
// `moelab calibrate --collect gate_ratios`) or given by hand. moelab's runtime then
// skips a token's non-top-1 expert whose gate is below beta x the top-1 gate
// (runner/jobs/prune/expert_skipping.h); transformers ignores the keys.
#include <filesystem>

#include "cluster/communicator.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "results/stats_file.h"
#include "runner/cli/commands.h"
#include "runner/cli/common_options.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/prune/expert_skipping.h"

namespace moelab::cli {
namespace {

struct SkipArgs {
  std::string model_dir, stats, out, gates = "renormalize";
  double beta = 0;
  bool beta_given = false, overwrite = false;
};

void run_set_skipping(const SkipArgs& a) {
  if (a.stats.empty() && !a.beta_given)
    throw InputError("moelab set-skipping", "give --stats (NAEE's median) or --beta");
  if (a.beta_given && !(a.beta >= 0 && a.beta <= 1))
    throw InputError("--beta", std::to_string(a.beta) + " is outside [0, 1] (skip when g_j < beta * g_1)");
  refuse_existing_output(a.out, a.overwrite);
  const hf::ModelConfig c = models::load_config(a.model_dir);
  if (c.num_experts_per_tok < 2)
    throw InputError(c.path, "num_experts_per_tok is " + std::to_string(c.num_experts_per_tok) +
                                 ": each token runs one expert, there is none to skip");
  std::optional<results::CalibrationStats> st;
  std::vector<double> beta(c.num_hidden_layers, 0.0);
  if (!a.stats.empty()) {
    st = results::read_stats(a.stats);
    beta = jobs::skip_betas_from_stats(c, *st, a.stats);
  }
  if (a.beta_given)
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) beta[l] = c.is_moe_layer(l) ? a.beta : 0.0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.is_moe_layer(l)) continue;
    std::string share;
    if (st)
      for (const auto& s : st->layers)
        if (s.layer == l)
          share = fmt::format(" (skips a second expert for {:.1f}% of the calibration tokens)",
                              100 * jobs::fraction_below(s.gate_ratio_hist_B, beta[l]));
    spdlog::info("layer {}: beta {:.4f}{}", l, beta[l], share);
  }
  jobs::write_skipping_model(a.model_dir, beta, a.gates == "renormalize", a.out, a.overwrite);
  spdlog::info("wrote {} (moelab_skip_beta per layer; gates after skipping: {})", a.out,
               a.gates == "renormalize" ? "renormalised" : "kept");
}

}  // namespace

void add_set_skipping_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "set-skipping",
      "Turn on NAEE dynamic expert skipping (Lu et al. 2024) in a copy of a model directory.\n\n"
      "At inference moelab then skips, per token, a routed expert other than the top-1 when its gate is\n"
      "below beta x the top-1 gate (top-2 Mixtral: the second expert when g2 < beta * g1); a skipped\n"
      "expert does not run. beta is per layer: NAEE's estimate is the median over calibration tokens of\n"
      "the router's second over first probability (moelab calibrate --collect gate_ratios; the\n"
      "histogram's median is within 5e-4 of the exact one), or --beta sets one value for every layer.\n"
      "After skipping, the kept gates are renormalised as the model's router does (NAEE's code; default)\n"
      "or keep their values (--gates keep).\n"
      "The copy's config.json gets moelab_skip_beta (one value per layer, 0 for dense layers) and\n"
      "moelab_skip_renormalize; transformers ignores both and runs the model without skipping.\n"
      "`moelab forward` logs the share of expert rows skipped; `moelab eval --efficiency` reports it\n"
      "with the expert FLOPs per token that really ran.\n\n"
      "Examples:\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --criteria EUF --collect gate_ratios --out stats.h5\n"
      "  moelab set-skipping models/debian-moe --stats stats.h5 --out skipping/\n"
      "  moelab set-skipping models/debian-moe --beta 0.3 --gates keep --out skipping/\n"
      "  moelab eval skipping/ --data models/debian-moe/corpus/en.test.jsonl --efficiency");
  auto a = std::make_shared<SkipArgs>();
  cmd->add_option("model", a->model_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--stats", a->stats, "HDF5 statistics from moelab calibrate with gate_ratios");
  auto* beta = cmd->add_option("--beta", a->beta, "one threshold in [0, 1] for every MoE layer (overrides --stats)");
  cmd->add_option("--gates", a->gates, "after skipping: renormalize the kept gates (NAEE's code) or keep them")
      ->check(CLI::IsMember({"renormalize", "keep"}));
  add_output_options(cmd, &a->out, &a->overwrite, "output model directory (written atomically)", true);
  cmd->callback([a, beta] {
    a->beta_given = beta->count() > 0;
    auto comm = cluster::world("auto");
    cluster::run_or_abort(*comm, [&] { run_set_skipping(*a); });
  });
}

}  // namespace moelab::cli
