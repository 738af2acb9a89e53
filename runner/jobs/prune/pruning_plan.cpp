#include "runner/jobs/prune/pruning_plan.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include <spdlog/spdlog.h>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"
#include "core/models/expert_surgery.h"

namespace moelab::jobs {
namespace {

// True when expert a (score sa) is dropped before b (score sb).
bool drops_first(double sa, double sb, bool min_direction) { return min_direction ? sa < sb : sa > sb; }

}  // namespace

void check_plan_options(const PlanOptions& o, const models::MoeModel& m) {
  if (!(o.ratio >= 0 && o.ratio < 1))
    throw InputError("--ratio", std::to_string(o.ratio) + " is outside [0, 1) (the fraction of experts dropped)");
  if (o.scope == results::PruneScope::kGlobal && !o.layer_ratios.empty())
    throw InputError("--layer-ratio", "per-layer ratios apply to the uniform scope, not to a global ratio");
  const auto layers = m.config.moe_layer_experts();
  for (const auto& [l, r] : o.layer_ratios) {
    if (!layers.count(l)) throw InputError("--layer-ratio", "layer " + std::to_string(l) + " is not an MoE layer");
    if (!(r >= 0 && r < 1))
      throw InputError("--layer-ratio", "layer " + std::to_string(l) + ": " + std::to_string(r) + " is outside [0, 1)");
  }
}

std::vector<int64_t> drop_order(const std::vector<double>& s, results::PruneDirection direction,
                                const std::vector<int64_t>& protect) {
  const std::set<int64_t> guarded(protect.begin(), protect.end());
  std::vector<int64_t> order;
  for (int64_t e = 0; e < int64_t(s.size()); ++e)
    if (!guarded.count(e)) order.push_back(e);
  const bool min_dir = direction == results::PruneDirection::kMin;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return drops_first(s[a], s[b], min_dir); });
  return order;
}

std::map<int64_t, int64_t> drop_counts(const PlanOptions& o, const models::MoeModel& m) {
  std::map<int64_t, int64_t> out;
  for (const auto& [l, E] : m.config.moe_layer_experts()) {
    const double r = o.layer_ratios.count(l) ? o.layer_ratios.at(l) : o.ratio;
    out[l] = std::llround(r * double(E));
  }
  return out;
}

PruningPlan plan_from_scores(const models::MoeModel& m, const results::CriterionScores& scores, const PlanOptions& o,
                             const std::string& scores_path) {
  check_plan_options(o, m);
  const auto layers = m.config.moe_layer_experts();
  for (const auto& [l, E] : layers) {
    auto it = scores.layers.find(l);
    if (it == scores.layers.end())
      throw InputError(scores_path, scores.name + " has no scores for MoE layer " + std::to_string(l));
    if (int64_t(it->second.size()) != E)
      throw InputError(scores_path, scores.name + " layer " + std::to_string(l) + " has " +
                                        std::to_string(it->second.size()) + " scores, the model " + std::to_string(E) +
                                        " experts (scores of a different model?)");
    for (size_t e = 0; e < it->second.size(); ++e)
      if (std::isnan(it->second[e]))
        throw InputError(scores_path, scores.name + " layer " + std::to_string(l) + " expert " + std::to_string(e) +
                                          " has no score (null): a plan cannot rank it");
  }
  const bool min_dir = o.direction == results::PruneDirection::kMin;
  const int64_t k = m.config.num_experts_per_tok;
  PruningPlan p;
  p.model = m.config.path;
  p.architecture = m.config.architecture;
  p.criterion = scores.name;
  p.direction = o.direction;
  p.scope = o.scope;
  p.ratio = o.ratio;
  p.layer_ratios = o.layer_ratios;
  p.scores = scores_path;
  std::map<int64_t, std::set<int64_t>> guarded;
  for (const auto& [l, ids] : o.protect) {
    if (!layers.count(l)) throw InputError("protected experts", "layer " + std::to_string(l) + " is not an MoE layer");
    for (int64_t e : ids) {
      if (e < 0 || e >= layers.at(l))
        throw InputError("protected experts", "layer " + std::to_string(l) + " has no expert " + std::to_string(e));
      guarded[l].insert(e);
    }
    if (!ids.empty()) p.protected_experts[l] = std::vector<int64_t>(guarded[l].begin(), guarded[l].end());
  }
  p.protect_rule = o.protect_rule;
  auto is_guarded = [&](int64_t l, int64_t e) { return guarded.count(l) && guarded.at(l).count(e); };
  std::map<int64_t, std::set<int64_t>> drop;
  if (o.scope == results::PruneScope::kUniform) {
    const auto counts = drop_counts(o, m);
    for (const auto& [l, E] : layers) {
      const auto it = p.protected_experts.find(l);
      const std::vector<int64_t> order =
          drop_order(scores.layers.at(l), o.direction, it == p.protected_experts.end() ? std::vector<int64_t>{} : it->second);
      const int64_t n = std::min<int64_t>(counts.at(l), order.size());
      if (n < counts.at(l))
        spdlog::warn("layer {}: drops {} experts instead of {}: {} of its {} are protected", l, n, counts.at(l),
                     E - int64_t(order.size()), E);
      drop[l].insert(order.begin(), order.begin() + n);
    }
  } else {
    struct Candidate {
      double score;
      int64_t layer, expert;
    };
    std::vector<Candidate> all;
    int64_t total = 0;
    for (const auto& [l, E] : layers) {
      total += E;
      for (int64_t e = 0; e < E; ++e) all.push_back({scores.layers.at(l)[e], l, e});
    }
    std::stable_sort(all.begin(), all.end(),
                     [&](const Candidate& a, const Candidate& b) { return drops_first(a.score, b.score, min_dir); });
    const int64_t want = std::llround(o.ratio * double(total));
    const int64_t floor = o.reduce_top_k ? 1 : k;  // experts a layer keeps at least
    int64_t dropped = 0;
    for (const auto& c : all) {
      if (dropped == want) break;
      if (layers.at(c.layer) - int64_t(drop[c.layer].size()) <= floor || is_guarded(c.layer, c.expert)) continue;
      drop[c.layer].insert(c.expert);
      ++dropped;
    }
  }
  int64_t min_kept = k;
  for (const auto& [l, E] : layers) {
    LayerPlan lp;
    lp.num_experts = E;
    for (int64_t e = 0; e < E; ++e) (drop[l].count(e) ? lp.drop : lp.keep).push_back(e);
    min_kept = std::min<int64_t>(min_kept, lp.keep.size());
    p.layers[l] = std::move(lp);
  }
  p.experts_per_token = o.reduce_top_k ? std::max<int64_t>(1, std::min(k, min_kept)) : k;
  check_plan(p, m, "pruning plan");
  return p;
}

void check_plan(const PruningPlan& p, const models::MoeModel& m, const std::string& path) {
  const auto layers = m.config.moe_layer_experts();
  if (!p.architecture.empty() && p.architecture != m.config.architecture)
    throw InputError(path, "is a plan for a different model (" + p.architecture + ", " + p.model + "), not " +
                               m.config.architecture + " " + m.config.path);
  std::set<int64_t> plan_layers;
  for (const auto& [l, lp] : p.layers) plan_layers.insert(l);
  std::set<int64_t> model_layers;
  for (const auto& [l, E] : layers) model_layers.insert(l);
  if (plan_layers != model_layers)
    throw InputError(path, "is a plan for a different model (" + p.model + "): its MoE layers differ from " + m.config.path);
  const int64_t k = p.experts_per_token > 0 ? p.experts_per_token : m.config.num_experts_per_tok;
  if (k > m.config.num_experts_per_tok)
    throw InputError(path, "experts_per_token " + std::to_string(k) + " exceeds the model's top-k " +
                               std::to_string(m.config.num_experts_per_tok));
  if (m.config.compressed() && k <= m.config.compressed_main)
    throw InputError(path, "experts_per_token " + std::to_string(k) + " would leave no auxiliary expert of the " +
                               "compressed model (main = " + std::to_string(m.config.compressed_main) + ")");
  for (const auto& [l, lp] : p.layers) {
    const std::string where = "layer " + std::to_string(l);
    if (lp.num_experts != layers.at(l))
      throw InputError(path, "is a plan for a different model (" + p.model + "): " + where + " has " +
                                 std::to_string(layers.at(l)) + " experts, the plan says " +
                                 std::to_string(lp.num_experts));
    std::set<int64_t> seen;
    for (int64_t e : lp.keep)
      if (e < 0 || e >= lp.num_experts || !seen.insert(e).second)
        throw InputError(path, where + ": keep lists expert " + std::to_string(e) + " out of range or twice");
    if (lp.keep.empty()) throw InputError(path, where + " drops all " + std::to_string(lp.num_experts) + " experts");
    if (p.protected_experts.count(l))
      for (int64_t e : p.protected_experts.at(l))
        if (!seen.count(e)) throw InputError(path, where + " drops expert " + std::to_string(e) + ", which it protects");
    if (int64_t(lp.keep.size()) < k)
      throw InputError(path, where + " keeps " + std::to_string(lp.keep.size()) + " experts, fewer than top-k = " +
                                 std::to_string(k) + " (prune with --reduce-top-k to lower k for every layer)");
  }
}

void apply_plan(models::MoeModel& m, const PruningPlan& p, const std::string& path) {
  check_plan(p, m, path);
  models::ExpertDrops drops;
  for (const auto& [l, lp] : p.layers) {
    std::set<int64_t> keep(lp.keep.begin(), lp.keep.end());
    for (int64_t e = 0; e < lp.num_experts; ++e)
      if (!keep.count(e)) drops[l].push_back(e);
  }
  if (p.experts_per_token > 0) m.config.num_experts_per_tok = p.experts_per_token;
  models::remove_experts(m, drops);
}

}  // namespace moelab::jobs
