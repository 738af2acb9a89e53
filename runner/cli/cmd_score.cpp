// moelab score: per-layer, per-expert scores for any criteria, from the HDF5
// statistics of `moelab calibrate` and/or the checkpoint's weights; no forward pass.
#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "common/log.h"
#include "criteria/registry.h"
#include "criteria/scores_file.h"
#include "results/stats_file.h"

namespace moelab::cli {
namespace {

struct ScoreArgs {
  std::string stats, model, second_model, out;
  std::vector<std::string> criteria;
  uint64_t seed = 0;
  bool list = false;
};

void print_list() {
  std::cout << "criterion          needs                          description\n";
  for (const auto& c : criteria::all_criteria()) {
    std::string needs;
    for (const auto& n : c->needs()) needs += (needs.empty() ? "" : ",") + n;
    std::printf("%-18s %-30s %s\n", c->name().c_str(), needs.empty() ? "-" : needs.c_str(), c->description().c_str());
  }
  std::cout << "\nEach criterion has two directions: Min-X drops the lowest-scoring experts, Max-X the highest.\n";
}

void run_score(const ScoreArgs& a) {
  if (a.list) {
    print_list();
    return;
  }
  if (a.stats.empty() && a.model.empty()) throw InputError("moelab score", "give --stats and/or --model");
  std::optional<results::CalibrationStats> st;
  if (!a.stats.empty()) st = results::read_stats(a.stats);
  std::optional<models::MoeModel> model, second;
  if (!a.model.empty()) model = models::load_model(a.model);
  if (!a.second_model.empty()) second = models::load_model(a.second_model);
  if (st && model) criteria::check_stats_match(*st, model->config, a.stats);

  std::vector<std::unique_ptr<criteria::Criterion>> list;
  for (const auto& n : a.criteria) list.push_back(criteria::make_criterion(n));
  if (list.empty()) throw InputError("--criteria", "name at least one criterion (moelab score --list)");
  criteria::ScoreInputs in;
  in.stats = st ? &*st : nullptr;
  in.model = model ? &*model : nullptr;
  in.second = second ? &*second : nullptr;
  in.seed = a.seed;
  // MoE layers from the statistics, else from the model.
  std::vector<int64_t> layers;
  if (st)
    for (const auto& ls : st->layers) layers.push_back(ls.layer);
  else
    for (int64_t l = 0; l < model->config.num_hidden_layers; ++l)
      if (model->layers[l].moe) layers.push_back(l);

  criteria::ScoresFile out;
  out.stats = a.stats;
  out.model = a.model;
  for (const auto& c : list) out.criteria.push_back(criteria::score_criterion(*c, in, layers));
  criteria::write_scores(out, a.out);
  spdlog::info("wrote {} ({} criteria x {} MoE layers)", a.out, list.size(), layers.size());
}

}  // namespace

void add_score_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Score every expert of every MoE layer with any criteria, from a statistics file of\n"
      "`moelab calibrate` and/or the checkpoint's weights, without running the model.\n"
      "Scores are float64, one per expert; a criterion has two directions when pruning: Min-X drops the\n"
      "lowest-scoring experts, Max-X the highest. Output JSON:\n"
      "  {\"criteria\": {\"EAN\": {\"version\": 1, \"layers\": {\"0\": [score of expert 0, ...], ...}}}}\n\n"
      "Examples:\n"
      "  moelab score --list\n"
      "  moelab score --stats stats.h5 --model models/tiny --criteria EAN,REAP,RWN --out scores.json");
  auto a = std::make_shared<ScoreArgs>();
  cmd->add_option("--stats", a->stats, "HDF5 statistics from moelab calibrate");
  cmd->add_option("--model", a->model, "model directory (weight criteria; checked against the statistics)");
  cmd->add_option("--second-model", a->second_model, "the other checkpoint (e.g. pre-trained, for RouterNormChange)");
  cmd->add_option("--criteria", a->criteria, "criteria to compute (comma-separated)")->delimiter(',');
  cmd->add_option("--out", a->out, "output JSON file (written atomically)");
  cmd->add_option("--seed", a->seed, "seed for randomised criteria (Random)");
  cmd->add_flag("--list", a->list, "list the criteria with what they need");
  cmd->callback([a] {
    if (!a->list && a->out.empty()) throw InputError("--out", "give the output file");
    run_score(*a);
  });
}

}  // namespace moelab::cli
