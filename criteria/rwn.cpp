// RWN, router weight norm.
//
// Paper: MC-Suite, "Finding Fantastic Experts in MoEs: A Unified Study for Expert
// Dropping Strategies and Observations" (arXiv 2504.05586), weight-based criteria
// (Max-RWN is the paper's best weight-only variant).
//
// Score of expert j: ||W_r[j, :]||_2, the L2 norm of the router (gate) row that
// produces expert j's logit. No choice is left open; computed in float64.
#include "criteria/criterion.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {

namespace {

class Rwn : public Criterion {
 public:
  std::string name() const override { return "RWN"; }
  std::string description() const override { return "router weight norm ||W_r[j,:]||_2 (MC-Suite)"; }
  std::vector<std::string> needs() const override { return {kNeedsWeights}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t /*moe_index*/, int64_t layer) const override {
    const auto& w = layer_experts(in.model, layer, name());
    at::Tensor r = w.router_ED.to(at::kDouble);
    return at::linalg_vector_norm(r, 2, {1}).cpu().contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_rwn() { return std::make_unique<Rwn>(); }

}  // namespace moelab::criteria
