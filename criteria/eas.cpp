// EAS, expert activation similarity (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, activation-based criteria): how similar the expert's mean
// activation is to the other experts'.
//
// Reading implemented:
//   EAS_j = sum over k != j of cos(mean a_j, mean a_k)
// with a_j(x) = act(x W_gate^T) * (x W_up^T) the INTERMEDIATE activation (width F), not
// the expert output f_j(x) (the paper allows either), and mean a_j the mean over the
// calibration tokens routed to j: act_sum_EF[j] / tokens_E[j]. An expert with no token
// has a zero mean; any cosine with a zero vector is 0. A layer with one expert scores 0.
// Max-EAS drops the experts most similar to the others (the most redundant).
// Computed in float64.
#include "criteria/moment_math.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Eas : public Criterion {
 public:
  std::string name() const override { return "EAS"; }
  std::string description() const override {
    return "activation similarity: sum over other experts of cos(mean a_j, mean a_k), a = intermediate activation";
  }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kActMoments}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kActMoments, name());
    at::Tensor n = s.tokens_E.to(at::kDouble).unsqueeze(1);         // [E, 1]
    at::Tensor sum = s.act_sum_EF.to(at::kDouble);                  // [E, F]
    at::Tensor mean = at::where(n > 0, sum / n.clamp_min(1), at::zeros_like(sum));
    return cosine_sums(at::mm(mean, mean.t()));
  }
};

}  // namespace

std::unique_ptr<Criterion> make_eas() { return std::make_unique<Eas>(); }

}  // namespace moelab::criteria
