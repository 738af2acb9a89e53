// EASY-EP (Dong et al. 2025, "Domain-Specific Pruning of Large Mixture-of-Experts
// Models with Few-shot Demonstrations"; code: RUCAIBox/EASYEP): output-aware expert
// importance g_j(x) ||f_j(x)||, weighted per token by how much the MoE block changes
// the hidden state, max(0, 1 - cos(h_in, h_out)).
//
// Reading implemented (from their pruning/model_new.py and expert_selection.py):
//   EASY-EP_j = sum over tokens x routed to j of g_j(x) ||f_j(x)||_2 max(0, 1 - cos(h_in(x), h_out(x)))
// with h_in the residual stream entering the MoE block and h_out = h_in + the block's
// routed output (no shared experts in the families here). A sum, as their selection
// script sums over tokens; experts with the largest scores are kept (Min-EASY-EP
// drops the lowest). Computed in float64, the cosine included (their code takes it
// in float32, whose rounding is of the order of 1 - cos itself for small changes).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class EasyEp : public Criterion {
 public:
  std::string name() const override { return "EASY-EP"; }
  std::string description() const override {
    return "sum of gate x ||expert output|| x max(0, 1 - cos(h_in, h_out)) (hidden-state change)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kHiddenChange}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kHiddenChange, name()).easyep_sum_E.to(at::kDouble);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_easy_ep() { return std::make_unique<EasyEp>(); }

}  // namespace moelab::criteria
