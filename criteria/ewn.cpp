// EWN, expert weight norm.
//
// Paper: MC-Suite, "Finding Fantastic Experts in MoEs: A Unified Study for Expert
// Dropping Strategies and Observations" (arXiv 2504.05586), weight-based criteria.
//
// Score of expert j: the Frobenius norm of the expert's weights.
//
// Reading implemented: ALL of expert j's weights together, i.e.
// sqrt(||W_gate||_F^2 + ||W_up||_F^2 + ||W_down||_F^2) (the L2 norm of the vector
// that concatenates the three flattened matrices; the router row is not included).
// Computed in float64 on the weights' device, over column chunks.
#include <algorithm>

#include "criteria/criterion.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {

namespace {

// sq += per-row sum of squares of t viewed as [E, -1], in float64 chunks.
void accumulate_squares(const at::Tensor& t, at::Tensor& sq) {
  const int64_t E = t.size(0);
  at::Tensor flat = t.reshape({E, -1});
  const int64_t n = flat.size(1);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 25) / std::max<int64_t>(E, 1));  // ~256 MiB of f64
  for (int64_t c = 0; c < n; c += chunk) {
    at::Tensor x = flat.narrow(1, c, std::min(chunk, n - c)).to(at::kDouble);
    sq.add_(x.square().sum(1));
  }
}

class Ewn : public Criterion {
 public:
  std::string name() const override { return "EWN"; }
  std::string description() const override {
    return "expert weight norm: Frobenius norm of gate, up and down together (MC-Suite)";
  }
  std::vector<std::string> needs() const override { return {kNeedsWeights}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t /*moe_index*/, int64_t layer) const override {
    const auto& w = layer_experts(in.model, layer, name());
    at::Tensor sq =
        at::zeros({w.num_experts()}, at::TensorOptions().dtype(at::kDouble).device(w.gate_up_EFD.device()));
    accumulate_squares(w.gate_up_EFD, sq);
    accumulate_squares(w.down_EDF, sq);
    return sq.sqrt().cpu().contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ewn() { return std::make_unique<Ewn>(); }

}  // namespace moelab::criteria
