// The `power_sums` statistic, for the unified criteria family (Liu et al., "How to Score
// Experts for One-Shot MoE Expert Pruning", arXiv 2606.15716): per MoE layer and expert,
// sum over the tokens routed to it of g_j(x)^a ||v_j(x)||_2^p for every a and p of a small
// exponent set and both choices of v (intermediate activation a_j, expert output f_j).
// A few dozen float64 sums per expert that add up across ranks, from which
// criteria/family.cpp scores any member without running the model again.
//
// Taken on the experts' process (on_expert), in float64; g is the gate weight as the
// model applies it (renormalised over the top k when the router does).
#pragma once

#include <map>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"
#include "runner/jobs/layerwise/layer_expert_rows.h"

namespace moelab::jobs {

class PowerSumCollector : public models::MoeObserver {
 public:
  // `exponents`: the a and p values (each >= 0, at most 8 of them).
  PowerSumCollector(const models::MoeModel& model, std::vector<double> exponents);

  // on_expert keeps the layer's per-expert tensors; on_combine (once all of the layer's
  // experts have run) reduces them for all experts at once.
  void on_expert(int64_t layer, int64_t expert, const at::Tensor& tag_n, const at::Tensor& act_nF,
                 const at::Tensor& out_nD, const at::Tensor& gate_n) override;
  void on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor& token_R, const at::Tensor& gate_R,
                  const at::Tensor& out_RD) override;

  // Sums over ranks (collective); call once, after the pass.
  // The running sums (before all_reduce), named, for calibration checkpoints.
  void append_state(StateTensors& out);
  void all_reduce(cluster::Communicator& comm);
  // Sets power_sum_EVXX of each MoE layer's statistics.
  void fill(std::vector<results::LayerStats>& layers) const;

 private:
  std::vector<double> exponents_;
  at::Tensor exponents_X1_;  // the same as f64 [X, 1], built once
  std::map<int64_t, at::Tensor> sums_;  // decoder layer -> [E, 2, X, X] f64 (CPU)
  LayerExpertRows rows_;  // the current layer's rows until on_combine
  void flush();
};

}  // namespace moelab::jobs
