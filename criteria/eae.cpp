// EAE, expert activation entropy (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, activation-based criteria): the entropy of the expert's activation
// distribution, estimated as in the paper by a sum over channels of the log standard
// deviation (the differential entropy of a Gaussian with independent channels, up to
// constants).
//
// Reading implemented, with a_j(x) the intermediate activation (width F) over the N_j
// calibration tokens routed to j (act_sum_EF, act_sq_sum_EF, tokens_E):
//   mu_c  = act_sum_EF[j, c] / N_j,   m2_c = act_sq_sum_EF[j, c] / N_j
//   std_c = sqrt(max(m2_c - mu_c^2, 0))              (population std, divisor N_j)
//   EAE_j = sum over c of log(max(std_c, 1e-12))
// Edge cases: the 1e-12 floor applies everywhere (a constant channel contributes
// log 1e-12). An expert with fewer than 2 routed tokens has no spread: all its
// std_c are taken as exactly 0 (no rounding residue from one token), so it scores
// F * log(1e-12), the lowest score possible; Min-EAE drops it first.
// Computed in float64.
#include <cmath>

#include "criteria/moment_math.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

constexpr double kStdFloor = 1e-12;

class Eae : public Criterion {
 public:
  std::string name() const override { return "EAE"; }
  std::string description() const override {
    return "activation entropy: sum over channels of log std of a_j over routed tokens (floor 1e-12)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kActMoments}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kActMoments, name());
    at::Tensor n = s.tokens_E.to(at::kDouble).unsqueeze(1);  // [E, 1]
    at::Tensor nn = n.clamp_min(1);
    at::Tensor mu = s.act_sum_EF.to(at::kDouble) / nn;
    at::Tensor m2 = s.act_sq_sum_EF.to(at::kDouble) / nn;
    // Fewer than 2 tokens: no spread at all (no rounding residue from one token).
    return sum_log_std(at::where(n >= 2, mu, at::zeros_like(mu)), at::where(n >= 2, m2, at::zeros_like(m2)), kStdFloor);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_eae() { return std::make_unique<Eae>(); }

}  // namespace moelab::criteria
