// How much NAEE dynamic skipping saves: per MoE layer, the (token, slot) rows the router
// chose and the rows the experts really ran (hf::ModelConfig::skip_beta; skipped rows
// never reach an expert). Counted on the tokens' process from the routing and combine
// taps; all_reduce() adds the ranks' counts.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"

namespace moelab::jobs {

// True when the model skips in some layer (a positive moelab_skip_beta).
bool skipping_enabled(const hf::ModelConfig& config);

// "N of M expert rows skipped (x%); per layer 0: a%, 2: b%" (after all_reduce).
class SkipCounter;
std::string describe_skipping(const SkipCounter& counter);

class SkipCounter : public models::MoeObserver {
 public:
  explicit SkipCounter(const models::MoeModel& model);

  void on_routing(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& topk_ids_NK,
                  const at::Tensor& topk_w_NK) override;
  void on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor& token_R, const at::Tensor& gate_R,
                  const at::Tensor& out_RD) override;

  void all_reduce(cluster::Communicator& comm);  // collective; once, after the passes

  struct Counts {
    int64_t tokens = 0, rows = 0, rows_run = 0;  // rows = tokens * k
    int64_t skipped() const { return rows - rows_run; }
    double skipped_fraction() const { return rows > 0 ? double(skipped()) / double(rows) : 0.0; }
  };
  const std::map<int64_t, Counts>& layers() const { return counts_; }
  Counts total() const;
  // Sum over MoE layers of 2 * 3 * D * F * (rows run / tokens): runner/jobs/eval/efficiency.h's
  // expert FLOPs per token, counting only the experts that ran.
  double expert_flops_per_token() const;

 private:
  std::map<int64_t, Counts> counts_;
  int64_t flops_per_row_ = 0;  // 2 * 3 * D * F
};

}  // namespace moelab::jobs
