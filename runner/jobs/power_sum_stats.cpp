#include "jobs/power_sum_stats.h"

namespace moelab::jobs {

PowerSumCollector::PowerSumCollector(const models::MoeModel& m, std::vector<double> exponents)
    : exponents_(std::move(exponents)), exponents_X1_(at::tensor(exponents_, at::kDouble).unsqueeze(1)) {
  const int64_t X = int64_t(exponents_.size());
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
    if (m.layers[l].moe) sums_[l] = at::zeros({m.layers[l].moe->num_experts(), 2, X, X}, at::kDouble);
}

void PowerSumCollector::on_expert(int64_t layer, int64_t e, const at::Tensor&, const at::Tensor& act_nF,
                                  const at::Tensor& out_nD, const at::Tensor& gate_n) {
  if (act_nF.size(0) == 0) return;
  const at::Tensor g_n = gate_n.detach().to(at::kCPU, at::kDouble);
  const at::Tensor norms[2] = {act_nF.detach().to(at::kCPU, at::kDouble).norm(2, 1),
                               out_nD.detach().to(at::kCPU, at::kDouble).norm(2, 1)};
  const int64_t X = int64_t(exponents_.size());
  // [X, n]: g^a and ||v||^p for every exponent (pow(0, 0) = 1).
  at::Tensor g_pow = at::stack(std::vector<at::Tensor>(X, g_n)).pow(exponents_X1_);
  at::Tensor row = sums_.at(layer)[e];
  for (int v = 0; v < 2; ++v) {
    at::Tensor n_pow = at::stack(std::vector<at::Tensor>(X, norms[v])).pow(exponents_X1_);
    row[v] += at::matmul(g_pow, n_pow.t());  // [a, p] = sum_x g^a ||v||^p
  }
}

void PowerSumCollector::append_state(StateTensors& out) {
  for (auto& [l, t] : sums_) out.emplace_back("power_sum_EVXX.layer" + std::to_string(l), &t);
}

void PowerSumCollector::all_reduce(cluster::Communicator& comm) {
  for (auto& [l, t] : sums_) comm.all_reduce_sum(t);
}

void PowerSumCollector::fill(std::vector<results::LayerStats>& layers) const {
  for (auto& s : layers) s.power_sum_EVXX = sums_.at(s.layer);
}

}  // namespace moelab::jobs
