// EGE, expert gradient entropy (MC-Suite, "Finding Fantastic Experts in MoEs", arXiv
// 2504.05586, gradient-based criteria; Min-EGE is the paper's best gradient
// criterion): EAE's entropy estimate applied to the expert's gradient.
//
// Reading implemented: the gradient G_j of the mean next-token loss w.r.t. expert j's
// weights, grouped by intermediate channel c (the unit EAE's channels are): channel c
// holds the 3 D values of gate row c, up row c and down column c. With mu_c and the
// population std_c of those values,
//   EGE_j = sum over c of log(max(std_c, 1e-12))
// (a Gaussian's differential entropy up to constants, as EAE). An expert with a zero
// gradient scores F * log(1e-12), the lowest possible. Computed in float64.
#include "core/common/error.h"
#include "criteria/moment_math.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

constexpr double kStdFloor = 1e-12;

class Ege : public Criterion {
 public:
  std::string name() const override { return "EGE"; }
  std::string description() const override {
    return "gradient entropy: sum over channels of log std of dL/dW_j (gate row, up row, down column)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kGradients}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kGradients, name());
    if (in.stats->hidden_size <= 0)
      throw InputError("statistics", "EGE needs the file attribute hidden_size; re-run `moelab calibrate`");
    const double n = 3.0 * double(in.stats->hidden_size);  // values per channel
    at::Tensor mu = s.grad_channel_sum_EF.to(at::kDouble) / n;
    at::Tensor m2 = s.grad_channel_sq_sum_EF.to(at::kDouble) / n;
    return sum_log_std(mu, m2, kStdFloor);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ege() { return std::make_unique<Ege>(); }

}  // namespace moelab::criteria
