// The `dense_outputs` statistic: for every MoE layer and expert j, the sum over ALL
// calibration tokens x of the expert's output f_j(x) (before gating), whether or not
// the router picked j for x. Its mean is what HC-SMoE (Chen et al., "Retraining-Free
// Merging of Sparse MoE via Hierarchical Clustering", arXiv 2410.08589) compares
// experts by: their code runs every expert on every token of the calibration set and
// averages (`_compute_all_similarities_by_expert_outputs`, `experts[i](x).mean(0)`).
//
// Fed by the models' dense observation tap (MoeObserver::on_all_expert_outputs), which
// runs every expert on every token and reports on the tokens' process, also under
// expert parallelism; all_reduce() adds the ranks' sums.
#pragma once

#include <map>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"

namespace moelab::jobs {

class DenseOutputCollector : public models::MoeObserver {
 public:
  explicit DenseOutputCollector(const models::MoeModel& model);

  bool wants_all_expert_outputs() const override { return true; }
  void on_all_expert_outputs(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& out_NED) override;

  // Sums over ranks (collective); call once, after the pass.
  // The running sums (before all_reduce), named, for calibration checkpoints.
  void append_state(StateTensors& out);
  void all_reduce(cluster::Communicator& comm);
  // Sets dense_out_sum_ED [E, D] float64 of each MoE layer's statistics (matched by layer).
  void fill(std::vector<results::LayerStats>& layers) const;

 private:
  std::map<int64_t, at::Tensor> sum_ED_;  // decoder layer -> [E, D] float64 (CPU)
};

}  // namespace moelab::jobs
