#include "runner/jobs/calibrate/dense_output_stats.h"

namespace moelab::jobs {

DenseOutputCollector::DenseOutputCollector(const models::MoeModel& m) {
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
    if (m.layers[l].moe)
      sum_ED_[l] = at::zeros({m.layers[l].moe->num_experts(), m.config.hidden_size}, at::kDouble);
}

void DenseOutputCollector::on_all_expert_outputs(int64_t layer, const at::Tensor&, const at::Tensor& out_NED) {
  if (out_NED.size(0) == 0) return;
  // Summed over tokens in float64 (the per-batch sums of fp32/bf16 outputs add up
  // across batches and ranks without further rounding).
  sum_ED_.at(layer) += at::sum(out_NED.detach(), {0}, false, at::kDouble).cpu();
}

void DenseOutputCollector::append_state(StateTensors& out) {
  for (auto& [l, t] : sum_ED_) out.emplace_back("dense_out_sum_ED.layer" + std::to_string(l), &t);
}

void DenseOutputCollector::all_reduce(cluster::Communicator& comm) {
  for (auto& [l, t] : sum_ED_) comm.all_reduce_sum(t);
}

void DenseOutputCollector::fill(std::vector<results::LayerStats>& layers) const {
  for (auto& s : layers) s.dense_out_sum_ED = sum_ED_.at(s.layer);
}

}  // namespace moelab::jobs
