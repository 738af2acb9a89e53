// moelab score: per-layer, per-expert scores for any criteria, from the HDF5
// statistics of `moelab calibrate` and/or the checkpoint's weights; no forward pass.
// With --agreement: how much the criteria agree on which experts to drop.
#include <iostream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "criteria/registry.h"
#include "criteria/scoring.h"
#include "results/criteria_agreement.h"
#include "results/stats_file.h"
#include "runner/cli/commands.h"
#include "runner/cli/model_options.h"

namespace moelab::cli {
namespace {

struct ScoreArgs {
  std::string stats, model, second_model, out, agreement;
  std::vector<std::string> criteria, positional;
  uint64_t seed = 0;
  double ratio = 0.5;
  bool list = false;
};

void print_list() {
  std::cout << "criterion          needs                          description\n";
  for (const auto& c : criteria::all_criteria()) {
    std::string needs;
    for (const auto& n : c->needs()) needs += (needs.empty() ? "" : ",") + n;
    std::printf("%-18s %-30s %s\n", c->name().c_str(), needs.empty() ? "-" : needs.c_str(), c->description().c_str());
  }
  std::cout << "\nParameterised criteria (one name pattern, many criteria):\n";
  for (const auto& p : criteria::criterion_patterns()) {
    std::printf("%-34s %-18s %s\n", p.syntax.c_str(), p.needs.c_str(), p.description.c_str());
    for (const auto& n : p.notes) std::printf("    %s\n", n.c_str());
  }
  std::cout << "\nEach criterion has two directions: Min-X drops the lowest-scoring experts, Max-X the highest.\n";
}

// "Max-EAN" -> (EAN, max); "EASY-EP" and bare names -> Min.
std::pair<std::string, bool> split_direction(const std::string& label) {
  if (label.size() > 4 && (label.rfind("Min-", 0) == 0 || label.rfind("min-", 0) == 0) && label != "Min-EP")
    return {label.substr(4), true};
  if (label.size() > 4 && (label.rfind("Max-", 0) == 0 || label.rfind("max-", 0) == 0)) return {label.substr(4), false};
  return {label, true};
}

struct Inputs {
  std::optional<results::CalibrationStats> st;
  std::optional<models::MoeModel> model, second;
  criteria::ScoreInputs in;
  std::vector<int64_t> layers;  // decoder indices of the MoE layers
  bool weights_read = false;
};

const char* weights_note(const Inputs& x) { return x.weights_read ? "weights read: yes" : "weights read: no"; }

// Loads what the criteria need: a model's weights only when some criterion reads them
// (activation criteria score from the statistics file alone; the model, if given, is
// then read for its config and tensor shapes only, to check the statistics match).
void load_inputs(Inputs& x, const std::string& stats, const std::string& model, const std::string& second,
                 const std::vector<std::unique_ptr<criteria::Criterion>>& list, uint64_t seed) {
  bool weights = false;
  for (const auto& c : list)
    for (const auto& n : c->needs()) weights = weights || n == criteria::kNeedsWeights;
  if (!stats.empty()) x.st = results::read_stats(stats);
  if (!model.empty()) {
    models::LoadOptions o;
    o.weights = weights;
    x.model = models::load_model(model, o);
  }
  if (!second.empty()) x.second = models::load_model(second);
  if (x.st && x.model) criteria::check_stats_match(*x.st, x.model->config, stats);
  x.weights_read = x.model && weights;
  x.in.stats = x.st ? &*x.st : nullptr;
  x.in.model = x.model ? &*x.model : nullptr;  // without weights: config and shapes only
  x.in.second = x.second ? &*x.second : nullptr;
  x.in.seed = seed;
  if (x.st)
    for (const auto& ls : x.st->layers) x.layers.push_back(ls.layer);
  else
    for (int64_t l = 0; l < x.model->config.num_hidden_layers; ++l)
      if (x.model->layers[l].moe) x.layers.push_back(l);
}

void run_agreement(const ScoreArgs& a) {
  if (!(a.ratio > 0 && a.ratio < 1)) throw InputError("--ratio", "must be in (0, 1) (the fraction of experts dropped)");
  std::vector<std::string> labels = a.positional;
  labels.insert(labels.end(), a.criteria.begin(), a.criteria.end());
  if (labels.size() < 2) throw InputError("--agreement", "name at least two criteria, e.g. Min-EAN Min-REAP Max-AIMER");
  std::vector<std::unique_ptr<criteria::Criterion>> list;
  std::vector<results::ChoiceScores> choices;
  for (const auto& l : labels) {
    auto [name, min_dir] = split_direction(l);
    list.push_back(criteria::make_criterion(name));
    results::ChoiceScores c;
    c.label = std::string(min_dir ? "Min-" : "Max-") + list.back()->name();
    c.min_direction = min_dir;
    for (const auto& prev : choices)
      if (prev.label == c.label) throw InputError("--agreement", c.label + " is named twice");
    choices.push_back(std::move(c));
  }
  Inputs x;
  load_inputs(x, a.agreement, a.model, a.second_model, list, a.seed);
  for (size_t i = 0; i < list.size(); ++i)
    choices[i].layers = criteria::score_criterion(*list[i], x.in, x.layers).layers;
  const auto rows = results::criteria_agreement(choices, a.ratio);
  std::cout << results::agreement_text(choices, rows, a.ratio);
  if (!a.out.empty()) {
    write_file_atomic(a.out, results::agreement_csv(rows));
    spdlog::info("wrote {} (per MoE layer and overall; {})", a.out, weights_note(x));
  }
}

void run_score(const ScoreArgs& a) {
  if (a.list) {
    print_list();
    return;
  }
  if (!a.agreement.empty()) {
    run_agreement(a);
    return;
  }
  if (!a.positional.empty())
    throw InputError("moelab score", "unexpected \"" + a.positional[0] + "\" (name criteria with --criteria)");
  if (a.out.empty()) throw InputError("--out", "give the output file");
  if (a.stats.empty() && a.model.empty()) throw InputError("moelab score", "give --stats and/or --model");
  std::vector<std::unique_ptr<criteria::Criterion>> list;
  for (const auto& n : a.criteria) list.push_back(criteria::make_criterion(n));
  if (list.empty()) throw InputError("--criteria", "name at least one criterion (moelab score --list)");
  Inputs x;
  load_inputs(x, a.stats, a.model, a.second_model, list, a.seed);

  results::ScoresFile out;
  out.stats = a.stats;
  out.model = a.model;
  for (const auto& c : list) out.criteria.push_back(criteria::score_criterion(*c, x.in, x.layers));
  results::write_scores(out, a.out);
  spdlog::info("wrote {} ({} criteria x {} MoE layers; {})", a.out, list.size(), x.layers.size(), weights_note(x));
}

}  // namespace

void add_score_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score",
      "Score every expert of every MoE layer with any criteria, from a statistics file of\n"
      "`moelab calibrate` and/or the checkpoint's weights, without running the model.\n"
      "Scores are float64, one per expert; a criterion has two directions when pruning: Min-X drops the\n"
      "lowest-scoring experts, Max-X the highest. Output JSON:\n"
      "  {\"criteria\": {\"EAN\": {\"version\": 1, \"layers\": {\"0\": [score of expert 0, ...], ...}}}}\n"
      "Parameterised criteria: the unified family Family-a<A>-p<P>-b<B>-<act|out> (N^-B * sum over routed\n"
      "tokens of g^A ||v||^P; REAP = Family-a1-p1-b1-out, MAN = Family-a0-p1-b1-act) scores from the\n"
      "statistics alone for any B and any A, P calibrated (0, 1, 2 by default); AIMER-<gate|up|down|mean>.\n"
      "Weights are read only when a criterion needs them.\n\n"
      "--agreement STATS.h5 CRITERIA...: Kendall tau between the criteria's drop orders and the overlap of\n"
      "the experts each would drop at --ratio, per MoE layer and overall (printed; CSV with --out).\n\n"
      "Examples:\n"
      "  moelab score --list\n"
      "  moelab calibrate models/debian-moe --data models/debian-moe/corpus/en.calibration.jsonl --collect power_sums --out stats.h5\n"
      "  moelab score --stats stats.h5 --model models/debian-moe --criteria EAN,REAP,RWN --out scores.json\n"
      "  moelab score --stats stats.h5 --criteria Family-a0-p2-b1-act,Family-a2-p1-b0.5-out --out scores.json\n"
      "  moelab score --agreement stats.h5 Min-EAN Min-REAP Min-MAN Max-AIMER --model models/debian-moe --ratio 0.5 "
      "--out agreement.csv");
  auto a = std::make_shared<ScoreArgs>();
  cmd->add_option("--stats", a->stats, "HDF5 statistics from moelab calibrate");
  cmd->add_option("--model", a->model,
                  "model directory (weight criteria; checked against the statistics; weights read only when needed)");
  cmd->add_option("--second-model", a->second_model, "the other checkpoint (e.g. pre-trained, for RouterNormChange)");
  cmd->add_option("--criteria", a->criteria, "criteria to compute (comma-separated)")->delimiter(',');
  cmd->add_option("--out", a->out, "output file, written atomically: scores JSON, or the agreement CSV");
  cmd->add_option("--seed", a->seed, "seed for randomised criteria (Random)");
  cmd->add_option("--agreement", a->agreement,
                  "statistics file: compare the criteria named after it (with Min-/Max-) instead of scoring");
  cmd->add_option("--ratio", a->ratio, "--agreement: the fraction of each layer's experts dropped (default 0.5)");
  cmd->add_option("criteria_list", a->positional, "--agreement: the criteria to compare, e.g. Min-EAN Max-AIMER");
  cmd->add_flag("--list", a->list, "list the criteria with what they need");
  cmd->callback([a] { run_score(*a); });
}

}  // namespace moelab::cli
