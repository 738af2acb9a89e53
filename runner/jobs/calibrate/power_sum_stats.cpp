#include "runner/jobs/calibrate/power_sum_stats.h"

namespace moelab::jobs {

PowerSumCollector::PowerSumCollector(const models::MoeModel& m, std::vector<double> exponents)
    : exponents_(std::move(exponents)), exponents_X1_(at::tensor(exponents_, at::kDouble).unsqueeze(1)) {
  const int64_t X = int64_t(exponents_.size());
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
    if (m.layers[l].moe) sums_[l] = at::zeros({m.layers[l].moe->num_experts(), 2, X, X}, at::kDouble);
}

void PowerSumCollector::on_expert(int64_t layer, int64_t e, const at::Tensor&, const at::Tensor& act_nF,
                                  const at::Tensor& out_nD, const at::Tensor& gate_n) {
  if (rows_.layer() != layer) flush();
  rows_.add(layer, e, act_nF, out_nD, gate_n, /*keep_act_norm=*/true);
}

void PowerSumCollector::on_combine(int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const at::Tensor&) {
  flush();
}

// For every row: g^a ||v||^p for every (a, p), in float64, added to its expert's
// [a, p] sums (index_add_ over the rows' expert ids).
void PowerSumCollector::flush() {
  if (!rows_.empty()) {
    const at::Tensor expert_M = rows_.expert_ids();
    const at::Tensor norms[2] = {rows_.act_norms(), rows_.out_norms()};
    // [M, X, 1]: g^a for every exponent (pow(0, 0) = 1); [M, 1, X]: ||v||^p.
    const at::Tensor g_pow = rows_.gates().unsqueeze(0).pow(exponents_X1_).t().unsqueeze(2);
    at::Tensor sums = sums_.at(rows_.layer());
    for (int v = 0; v < 2; ++v) {
      at::Tensor n_pow = norms[v].unsqueeze(0).pow(exponents_X1_).t().unsqueeze(1);
      sums.select(1, v).index_add_(0, expert_M, g_pow * n_pow);  // [e, a, p] += g^a ||v||^p
    }
  }
  rows_.clear();
}

void PowerSumCollector::append_state(StateTensors& out) {
  flush();
  for (auto& [l, t] : sums_) out.emplace_back("power_sum_EVXX.layer" + std::to_string(l), &t);
}

void PowerSumCollector::all_reduce(cluster::Communicator& comm) {
  flush();
  for (auto& [l, t] : sums_) comm.all_reduce_sum(t);
}

void PowerSumCollector::fill(std::vector<results::LayerStats>& layers) const {
  for (auto& s : layers) s.power_sum_EVXX = sums_.at(s.layer);
}

}  // namespace moelab::jobs
