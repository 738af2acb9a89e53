#include "runner/jobs/prune/novice_substitution.h"

#include "core/common/error.h"

namespace moelab::jobs {

void substitute_novices(models::MoeModel& m, const PruningPlan& plan, const results::CalibrationStats& st,
                        const std::string& stats_path) {
  check_plan(plan, m, "pruning plan");
  if (m.config.has_novices()) throw InputError(m.config.path, "already has MoNE novices");
  const hf::ModelConfig& c = m.config;
  if (m.family->load_experts || c.router.correction_bias || c.router.gate_on_input || c.compressed() ||
      !c.skip_beta.empty())
    throw InputError("--substitute", "novices are not supported by " + m.family->name +
                                         " or with compressed experts / NAEE skipping (they need a plain softmax "
                                         "router gating the experts' outputs)");
  if (plan.experts_per_token > 0 && plan.experts_per_token != m.config.num_experts_per_tok)
    throw InputError("--substitute", "novices keep the router's choices: a plan that lowers top-k (--reduce-top-k) "
                                     "cannot be substituted");
  if (!st.collected.count(results::stat::kOutMoments))
    throw InputError(stats_path, "has no out_moments statistics (each expert's mean output, which its novice is): "
                                 "calibrate with --collect out_moments");
  std::vector<int64_t> novices(m.config.num_hidden_layers, 0);
  for (const auto& [l, lp] : plan.layers) {
    auto& w = *m.layers[l].moe;
    if (!w.all_local()) throw InputError("--substitute", "needs every expert in this process (no expert parallelism)");
    const results::LayerStats* s = nullptr;
    for (const auto& x : st.layers)
      if (x.layer == l) s = &x;
    if (s == nullptr || s->out_sum_ED.size(0) != lp.num_experts || s->out_sum_ED.size(1) != m.config.hidden_size)
      throw InputError(stats_path, "statistics of a different model: layer " + std::to_string(l) +
                                       " does not have out_sum_ED [" + std::to_string(lp.num_experts) + ", " +
                                       std::to_string(m.config.hidden_size) + "]");
    if (lp.drop.empty()) continue;
    std::vector<int64_t> order = lp.keep;
    order.insert(order.end(), lp.drop.begin(), lp.drop.end());
    const auto i64 = at::TensorOptions().dtype(at::kLong);
    const at::Tensor keep = at::tensor(lp.keep, i64), drop = at::tensor(lp.drop, i64);
    const at::Tensor n = s->tokens_E.to(at::kDouble).index_select(0, drop).unsqueeze(1);
    const at::Tensor mean = s->out_sum_ED.to(at::kDouble).index_select(0, drop) / n.clamp_min(1);
    w.novice_ND = at::where(n > 0, mean, at::zeros_like(mean)).to(w.router_ED.options());
    w.router_ED = w.router_ED.index_select(0, at::tensor(order, i64).to(w.router_ED.device()));
    w.gate_up_EFD = w.gate_up_EFD.index_select(0, keep.to(w.gate_up_EFD.device()));
    w.down_EDF = w.down_EDF.index_select(0, keep.to(w.down_EDF.device()));
    std::vector<int64_t> ids;
    for (int64_t e : order) ids.push_back(w.original_ids.at(e));
    w.original_ids = ids;
    m.config.num_experts_per_layer[l] = int64_t(lp.keep.size());
    novices[l] = int64_t(lp.drop.size());
  }
  m.config.novices_per_layer = novices;
}

}  // namespace moelab::jobs
