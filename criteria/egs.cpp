// EGS, expert gradient similarity (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, gradient-based criteria): how similar the expert's gradient is to
// the other experts'.
//
// Reading implemented: EGS_j = sum over k != j of cos(G_j, G_k), G the flattened
// gradients of the mean next-token loss w.r.t. each expert's gate, up and down
// matrices (runner/jobs/calibrate/expert_gradients.h), from the Gram matrix grad_gram_EE. A cosine with
// a zero gradient is 0. Max-EGS drops the experts whose updates are most redundant.
// Computed in float64.
#include "criteria/moment_math.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Egs : public Criterion {
 public:
  std::string name() const override { return "EGS"; }
  std::string description() const override {
    return "gradient similarity: sum over other experts of cos(dL/dW_j, dL/dW_k)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kGradients}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return cosine_sums(layer_stats(in, moe_index, results::stat::kGradients, name()).grad_gram_EE);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_egs() { return std::make_unique<Egs>(); }

}  // namespace moelab::criteria
