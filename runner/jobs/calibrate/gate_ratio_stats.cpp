#include "runner/jobs/calibrate/gate_ratio_stats.h"

#include "core/common/error.h"

namespace moelab::jobs {

GateRatioCollector::GateRatioCollector(const models::MoeModel& m) {
  // The ratio is read from a softmax over the logits: routers that score otherwise
  // (DeepSeek-V3: sigmoid) gate by other numbers.
  // Routers that choose otherwise than by the softmax's top-k (Phi-3.5-MoE's sparsemixer,
  // ERNIE-4.5's correction bias) gate slots that this ratio does not describe.
  if (!m.config.router.gates_are_softmax_topk())
    throw InputError(m.config.path, "gate_ratios (NAEE dynamic skipping) need a softmax top-k router; " + m.family->name +
                                        " routes with " + m.config.router.describe());
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
    if (m.layers[l].moe) hist_B_[l] = at::zeros({results::kGateRatioBins}, at::kLong);
}

void GateRatioCollector::on_routing(int64_t layer, const at::Tensor& logits_NE, const at::Tensor&, const at::Tensor&) {
  if (logits_NE.size(0) == 0 || logits_NE.size(1) < 2) return;
  // NAEE: softmax over all experts, sorted; ratio = second / first. In [0, 1].
  at::Tensor top2 = std::get<0>(at::topk(at::softmax(logits_NE.detach().to(at::kFloat), -1), 2, -1)).to(at::kDouble);
  at::Tensor ratio_N = top2.select(1, 1) / top2.select(1, 0);
  const int64_t B = results::kGateRatioBins;
  at::Tensor bin_N = at::floor(ratio_N * double(B)).to(at::kLong).clamp(0, B - 1);
  hist_B_.at(layer) += at::bincount(bin_N.cpu(), {}, B);
}

void GateRatioCollector::append_state(StateTensors& out) {
  for (auto& [l, t] : hist_B_) out.emplace_back("gate_ratio_hist_B.layer" + std::to_string(l), &t);
}

void GateRatioCollector::all_reduce(cluster::Communicator& comm) {
  for (auto& [l, t] : hist_B_) comm.all_reduce_sum(t);
}

void GateRatioCollector::fill(std::vector<results::LayerStats>& layers) const {
  for (auto& s : layers) s.gate_ratio_hist_B = hist_B_.at(s.layer);
}

}  // namespace moelab::jobs
