// MAN, mean activation norm (Liu et al., "How to Score Experts for One-Shot MoE Expert
// Pruning", arXiv 2606.15716; member (a, p, b) = (0, 1, 1) of their unified family on
// the intermediate activation): the mean over the tokens routed to expert j of
// ||a_j(x)||_2, a_j(x) = act(x W_gate^T) * (x W_up^T). EAN divided by the routed-token
// count: gate-free and routing-frequency-free, the paper's best task-agnostic choice.
// An expert that received no token scores 0. Prune the lowest (Min-MAN).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Man : public Criterion {
 public:
  std::string name() const override { return "MAN"; }
  std::string description() const override { return "mean over routed tokens of ||a_j(x)|| (Liu et al. 2026)"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kActNorms}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kActNorms, name());
    return per_routed_token(s.act_norm_sum_E, s.tokens_E);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_man() { return std::make_unique<Man>(); }

}  // namespace moelab::criteria
