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
#include <algorithm>

#include "criteria/criterion.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {

namespace {

// gram += X X^T over the columns of t viewed as [E, -1], in float64 chunks.
void accumulate_gram(const at::Tensor& t, at::Tensor& gram) {
  const int64_t E = t.size(0);
  at::Tensor flat = t.reshape({E, -1});
  const int64_t n = flat.size(1);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 25) / std::max<int64_t>(E, 1));  // ~256 MiB of f64
  for (int64_t c = 0; c < n; c += chunk) {
    at::Tensor x = flat.narrow(1, c, std::min(chunk, n - c)).to(at::kDouble);
    gram.add_(at::mm(x, x.t()));
  }
}

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
    accumulate_gram(w.gate_up_EFD, gram);
    accumulate_gram(w.down_EDF, gram);
    gram = gram.cpu();
    at::Tensor norm = gram.diagonal().clamp_min(0).sqrt();  // [E]
    at::Tensor denom = at::outer(norm, norm);
    at::Tensor cos = at::where(denom > 0, gram / denom, at::zeros_like(gram));
    cos.fill_diagonal_(0);
    return cos.sum(1).contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ews() { return std::make_unique<Ews>(); }

}  // namespace moelab::criteria
