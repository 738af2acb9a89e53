// EGN, expert gradient norm (MC-Suite, "Finding Fantastic Experts in MoEs", arXiv
// 2504.05586, gradient-based criteria): the norm of the gradient of the next-token
// loss with respect to the expert's weights.
//
// Reading implemented: EGN_j = ||G_j||_2 with G_j the gradient of the MEAN next-token
// cross-entropy over the whole calibration set w.r.t. expert j's gate, up and down
// matrices together (runner/jobs/calibrate/expert_gradients.h), i.e. sqrt(grad_sq_norm_E[j]). An expert
// no token reached scores 0. Computed in float64.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Egn : public Criterion {
 public:
  std::string name() const override { return "EGN"; }
  std::string description() const override {
    return "gradient norm: ||dL/dW_j|| over gate, up and down, L the mean next-token loss";
  }
  std::vector<std::string> needs() const override { return {results::stat::kGradients}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kGradients, name()).grad_sq_norm_E.clamp_min(0).sqrt();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_egn() { return std::make_unique<Egn>(); }

}  // namespace moelab::criteria
