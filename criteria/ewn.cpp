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
#include "criteria/criterion.h"
#include "criteria/stats_access.h"
#include "criteria/weight_chunks.h"

namespace moelab::criteria {

namespace {

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
    for (const at::Tensor* t : {&w.gate_up_EFD, &w.down_EDF})
      for_each_f64_chunk(*t, [&](const at::Tensor& x) { sq.add_(x.square().sum(1)); });
    return sq.sqrt().cpu().contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ewn() { return std::make_unique<Ewn>(); }

}  // namespace moelab::criteria
