// The `gate_ratios` statistic, for NAEE's dynamic skipping (Lu et al., "Not All Experts
// are Equal: Efficient Expert Pruning and Skipping for Mixture-of-Experts LLMs", ACL
// 2024; code: github.com/Lucky-Lance/Expert_Sparsity, method/dynamic_skipping.py).
// NAEE sets each layer's threshold beta to the median over calibration tokens of
// w_1 / w_0, the token's second-largest over its largest router softmax probability.
// A median needs the distribution: we keep, per MoE layer, a histogram of that ratio
// over [0, 1] (results::kGateRatioBins bins of int64 counts), which adds up across
// ranks; runner/jobs/prune/expert_skipping.h reads the median back from it.
//
// Ratios are taken from the router logits (softmax in float32, as the runtime's
// skipping rule compares them), on the tokens' process: every token is counted once.
#pragma once

#include <map>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"

namespace moelab::jobs {

class GateRatioCollector : public models::MoeObserver {
 public:
  explicit GateRatioCollector(const models::MoeModel& model);

  void on_routing(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& topk_ids_NK,
                  const at::Tensor& topk_w_NK) override;

  // Sums over ranks (collective); call once, after the pass.
  // The running sums (before all_reduce), named, for calibration checkpoints.
  void append_state(StateTensors& out);
  void all_reduce(cluster::Communicator& comm);
  // Sets gate_ratio_hist_B [kGateRatioBins] int64 of each MoE layer's statistics.
  void fill(std::vector<results::LayerStats>& layers) const;

 private:
  std::map<int64_t, at::Tensor> hist_B_;  // decoder layer -> [B] int64 (CPU)
};

}  // namespace moelab::jobs
