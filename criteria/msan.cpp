// MSAN, mean squared activation norm (Liu et al., arXiv 2606.15716; member
// (a, p, b) = (0, 2, 1) of their unified family on the intermediate activation): the
// mean over the tokens routed to expert j of ||a_j(x)||_2^2. Weighs the tokens that
// excite an expert strongly more than MAN does. An expert that received no token
// scores 0. Prune the lowest (Min-MSAN).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Msan : public Criterion {
 public:
  std::string name() const override { return "MSAN"; }
  std::string description() const override { return "mean over routed tokens of ||a_j(x)||^2 (Liu et al. 2026)"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kActNorms}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kActNorms, name());
    return per_routed_token(s.act_norm_sq_sum_E, s.tokens_E);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_msan() { return std::make_unique<Msan>(); }

}  // namespace moelab::criteria
