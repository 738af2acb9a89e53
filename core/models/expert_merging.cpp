#include "core/models/expert_merging.h"

#include <cmath>

#include "core/common/error.h"
#include "core/common/log.h"

namespace moelab::models {
namespace {

void check_layer(const MoeModel& m, int64_t l, const std::vector<ExpertGroup>& groups, const std::string& what) {
  const auto& c = m.config;
  const std::string where = "layer " + std::to_string(l);
  if (l < 0 || l >= c.num_hidden_layers)
    throw InputError(what, where + " does not exist (model has " + std::to_string(c.num_hidden_layers) + " layers)");
  if (!m.layers[l].moe) throw InputError(what, where + " is a dense layer, it has no experts");
  const ExpertWeights& w = *m.layers[l].moe;
  if (!w.all_local()) throw InputError(what, "merging needs all experts in one process (no expert parallelism)");
  const int64_t E = w.num_experts();
  std::vector<int> seen(E, 0);
  for (const auto& g : groups) {
    if (g.members.empty()) throw InputError(what, where + " has an empty group");
    if (g.weights.size() != g.members.size())
      throw InputError(what, where + ": a group has " + std::to_string(g.members.size()) + " experts but " +
                                 std::to_string(g.weights.size()) + " weights");
    double sum = 0;
    bool dominant_in = false;
    for (size_t i = 0; i < g.members.size(); ++i) {
      const int64_t e = g.members[i];
      if (e < 0 || e >= E)
        throw InputError(what, where + " has no expert " + std::to_string(e) + " (it has " + std::to_string(E) + ")");
      if (seen[e]++) throw InputError(what, where + " lists expert " + std::to_string(e) + " in two groups");
      if (!(g.weights[i] >= 0)) throw InputError(what, where + ": merge weights must be >= 0");
      sum += g.weights[i];
      dominant_in |= e == g.dominant;
    }
    if (std::abs(sum - 1) > 1e-6) throw InputError(what, where + ": a group's merge weights sum to " +
                                                             std::to_string(sum) + ", not 1");
    if (!dominant_in) throw InputError(what, where + ": a group's dominant expert is not one of its members");
  }
  for (int64_t e = 0; e < E; ++e)
    if (!seen[e]) throw InputError(what, where + ": expert " + std::to_string(e) + " is in no group");
  if (int64_t(groups.size()) < c.num_experts_per_tok)
    throw InputError(what, where + " would keep " + std::to_string(groups.size()) +
                               " experts, fewer than num_experts_per_tok = " + std::to_string(c.num_experts_per_tok));
}

// sum_i weights[i] * t[members[i]] in float64, cast back to t's dtype.
at::Tensor weighted_rows(const at::Tensor& t, const ExpertGroup& g) {
  std::vector<at::Tensor> rows;
  for (int64_t e : g.members) rows.push_back(t[e]);
  return weighted_sum_f64(rows, g.weights).to(t.scalar_type());
}

}  // namespace

at::Tensor weighted_sum_f64(const std::vector<at::Tensor>& xs, const std::vector<double>& weights) {
  at::Tensor acc = at::zeros(xs.at(0).sizes(), xs[0].options().dtype(at::kDouble));
  for (size_t i = 0; i < xs.size(); ++i) acc += weights[i] * xs[i].to(at::kDouble);
  return acc;
}

void merge_experts(MoeModel& m, const ExpertMerges& merges, RouterMerge router, const std::string& what) {
  if (m.config.has_novices())
    throw InputError(m.config.path, "has MoNE novices (\"moelab_novices_per_layer\"): merge the model they were made from");
  // Validate every layer before changing any, so a bad plan leaves the model intact.
  for (const auto& [l, groups] : merges) check_layer(m, l, groups, what);
  for (const auto& [l, groups] : merges) {
    ExpertWeights& w = *m.layers[l].moe;
    std::vector<at::Tensor> router_rows, gate_up, down, ces, theta, bias, router_bias, gate_up_bias, down_bias;
    std::vector<int64_t> ids;
    for (const auto& g : groups) {
      router_rows.push_back(router == RouterMerge::kDominant ? w.router_ED[g.dominant].clone()
                                                             : weighted_rows(w.router_ED, g));
      gate_up.push_back(weighted_rows(w.gate_up_EFD, g));
      down.push_back(weighted_rows(w.down_EDF, g));
      // Compressed experts: a group's vectors are the same weighted mean of its members' rows.
      if (w.ces_E3W.defined()) ces.push_back(weighted_rows(w.ces_E3W, g));
      if (w.theta_ED.defined()) theta.push_back(weighted_rows(w.theta_ED, g));
      // DeepSeek-V3 correction bias: follows the router row (the dominant's, or the average).
      if (w.correction_bias_E.defined())
        bias.push_back(router == RouterMerge::kDominant ? w.correction_bias_E[g.dominant].clone()
                                                        : weighted_rows(w.correction_bias_E, g));
      // gpt-oss: the router bias follows the router row; the experts' biases are averaged
      // like their matrices (the merged expert is the same weighted mean of affine maps).
      if (w.router_bias_E.defined())
        router_bias.push_back(router == RouterMerge::kDominant ? w.router_bias_E[g.dominant].clone()
                                                               : weighted_rows(w.router_bias_E, g));
      if (w.gate_up_bias_EF.defined()) gate_up_bias.push_back(weighted_rows(w.gate_up_bias_EF, g));
      if (w.down_bias_ED.defined()) down_bias.push_back(weighted_rows(w.down_bias_ED, g));
      ids.push_back(w.original_ids[g.dominant]);
    }
    if (w.router_bias_E.defined()) w.router_bias_E = at::stack(router_bias);
    if (w.gate_up_bias_EF.defined()) w.gate_up_bias_EF = at::stack(gate_up_bias);
    if (w.down_bias_ED.defined()) w.down_bias_ED = at::stack(down_bias);
    w.router_ED = at::stack(router_rows);
    w.gate_up_EFD = at::stack(gate_up);
    w.down_EDF = at::stack(down);
    if (w.ces_E3W.defined()) w.ces_E3W = at::stack(ces);
    if (w.theta_ED.defined()) w.theta_ED = at::stack(theta);
    if (w.correction_bias_E.defined()) w.correction_bias_E = at::stack(bias);
    w.original_ids = ids;
    m.config.num_experts_per_layer[l] = int64_t(groups.size());
  }
  // Merged experts belong to no single group: grouped routing (DeepSeek n_group > 1)
  // cannot be kept.
  auto& c = m.config;
  if (!merges.empty() && c.router.grouped()) {
    spdlog::warn("merging experts gives up grouped routing ({}: n_group {}, topk_group {}): the merged model routes "
                 "over all its experts (n_group = topk_group = 1)",
                 hf::to_string(c.router.topk_method), c.router.n_group, c.router.topk_group);
    c.router.n_group = 1;
    c.router.topk_group = 1;
  }
}

}  // namespace moelab::models
