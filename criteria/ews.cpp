// EWS, expert weight similarity.
//
// Paper: MC-Suite, "Finding Fantastic Experts in MoEs: A Unified Study for Expert
// Dropping Strategies and Observations" (arXiv 2504.05586), weight-based criteria.
//
// Score of expert j: sum over the other experts k != j of cos(vec(W_j), vec(W_k)).
//
// Reading implemented (the paper leaves the choice of W_j open):
// - W_j is ALL of expert j's weights flattened together into one vector: its gate
//   [F, D], up [F, D] and down [D, F] matrices (the router row is not part of it).
//   Equivalently cos = <W_j, W_k> / (||W_j||_F ||W_k||_F) with the inner products and
//   norms summed over the three matrices.
// - A cosine involving an all-zero expert is taken as 0.
// - A layer with a single expert scores 0 (empty sum).
// Computed in float64 on the weights' device, as the Gram matrix of the flattened
// experts accumulated over column chunks (no float64 copy of a whole layer).
#include "criteria/criterion.h"
#include "criteria/moment_math.h"
#include "criteria/stats_access.h"
#include "criteria/weight_chunks.h"

namespace moelab::criteria {

namespace {

class Ews : public Criterion {
 public:
  std::string name() const override { return "EWS"; }
  std::string description() const override {
    return "expert weight similarity: sum over other experts of cos(vec W_j, vec W_k), W = gate+up+down (MC-Suite)";
  }
  std::vector<std::string> needs() const override { return {kNeedsWeights}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t /*moe_index*/, int64_t layer) const override {
    const auto& w = layer_experts(in.model, layer, name());
    const int64_t E = w.num_experts();
    at::Tensor gram = at::zeros({E, E}, at::TensorOptions().dtype(at::kDouble).device(w.gate_up_EFD.device()));
    for (const at::Tensor* t : {&w.gate_up_EFD, &w.down_EDF})
      for_each_f64_chunk(*t, [&](const at::Tensor& x) { gram.add_(at::mm(x, x.t())); });
    return cosine_sums(gram.cpu()).contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ews() { return std::make_unique<Ews>(); }

}  // namespace moelab::criteria
