// Collects, in the one calibration forward pass, every statistic group asked for
// (results::stat::k*), for every MoE layer, as sums. Runs under expert parallelism:
// routing statistics are gathered on the tokens' rank, activation/output statistics
// on the experts' rank, EASY-EP's hidden-state change on the tokens' rank;
// all_reduce() adds the ranks' sums.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"
#include "runner/jobs/layerwise/layer_expert_rows.h"

namespace moelab::jobs {

class StatsCollector : public models::MoeObserver {
 public:
  StatsCollector(const models::MoeModel& model, std::set<std::string> groups);

  void on_batch(const at::Tensor& token_ids_N) override;
  void on_routing(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& topk_ids_NK,
                  const at::Tensor& topk_w_NK) override;
  void on_expert(int64_t layer, int64_t expert, const at::Tensor& tag_n, const at::Tensor& act_nF,
                 const at::Tensor& out_nD, const at::Tensor& gate_n) override;
  void on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor& token_R, const at::Tensor& gate_R,
                  const at::Tensor& out_RD) override;
  void on_moe_output(int64_t layer, const at::Tensor& h_in_ND, const at::Tensor& y_ND) override;

  // Sums over ranks (collective) and packs the token bitmaps. Call once, after the pass.
  void all_reduce(cluster::Communicator& comm);
  // True when a second pass is needed (act_outliers): call start_outlier_pass() after
  // all_reduce(), run the same batches again, then all_reduce_outliers().
  bool needs_outlier_pass() const { return has(results::stat::kActOutliers); }
  void start_outlier_pass();
  void all_reduce_outliers(cluster::Communicator& comm);
  // The running sums (before all_reduce), named, for calibration checkpoints.
  void append_state(StateTensors& out);
  // The statistics (after all_reduce). Metadata fields are left to the caller.
  results::CalibrationStats take();

 private:
  bool has(const std::string& g) const { return groups_.count(g) != 0; }
  std::set<std::string> groups_;
  std::map<int64_t, size_t> slot_of_layer_;  // decoder layer -> index into layers_
  std::vector<results::LayerStats> layers_;
  std::vector<at::Tensor> seen_EV_;  // bool [E, V] per MoE layer (packed into bits at the end)
  at::Tensor batch_ids_N_;
  // EASY-EP: this layer's rows (expert [R], token [R], g ||f|| [R] f64) until its
  // output h_out is known.
  struct PendingRows {
    at::Tensor expert_R, token_R, gate_norm_R;
  };
  std::map<int64_t, PendingRows> pending_;
  // act_norms / out_norms: the current layer's routed rows until on_combine, then
  // summed for all experts at once (a few ops per layer instead of a dozen per expert).
  LayerExpertRows rows_;
  void flush_experts();
  bool outlier_pass_ = false;
  std::vector<at::Tensor> lo_EF_, hi_EF_;  // mean -+ 3 std per layer (outlier pass)
  int64_t vocab_ = 0;
};

}  // namespace moelab::jobs
