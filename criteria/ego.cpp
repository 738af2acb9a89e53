// EGO, expert gradient outliers (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, gradient-based criteria): EAO's outlier count applied to the
// expert's gradient.
//
// Reading implemented: the gradient G_j of the mean next-token loss w.r.t. expert j's
// weights, grouped by intermediate channel c as in EGE (gate row c, up row c, down
// column c: 3 D values); the score counts the values farther than 3 population
// standard deviations from their channel's mean. Counted once the gradient is complete
// (no second pass needed, unlike EAO). A raw count.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Ego : public Criterion {
 public:
  std::string name() const override { return "EGO"; }
  std::string description() const override {
    return "gradient outliers: values of dL/dW_j outside their channel's mean +- 3 std";
  }
  std::vector<std::string> needs() const override { return {results::stat::kGradients}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kGradients, name()).grad_outliers_E.to(at::kDouble);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ego() { return std::make_unique<Ego>(); }

}  // namespace moelab::criteria
