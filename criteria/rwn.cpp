// RWN, router weight norm.
//
// Paper: MC-Suite, "Finding Fantastic Experts in MoEs: A Unified Study for Expert
// Dropping Strategies and Observations" (arXiv 2504.05586), weight-based criteria
// (Max-RWN is the paper's best weight-only variant).
//
// Score of expert j: ||W_r[j, :]||_2, the L2 norm of the router (gate) row that
// produces expert j's logit. No choice is left open; computed in float64.
#include "common/error.h"
#include "criteria/criterion.h"

namespace moelab::criteria {

namespace {

const char* const kWho = "criterion RWN";

class Rwn : public Criterion {
 public:
  std::string name() const override { return "RWN"; }
  std::string description() const override { return "router weight norm ||W_r[j,:]||_2 (MC-Suite)"; }
  std::vector<std::string> needs() const override { return {kNeedsWeights}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t /*moe_index*/, int64_t layer) const override {
    if (in.model == nullptr) throw InputError(kWho, "needs the model's weights (no model was given)");
    if (layer < 0 || layer >= static_cast<int64_t>(in.model->layers.size()) || !in.model->layers[layer].moe)
      throw InputError(kWho, "layer " + std::to_string(layer) + " is not an MoE layer of the model");
    const auto& w = *in.model->layers[layer].moe;
    if (!w.router_ED.defined() || !w.gate_up_EFD.defined() || !w.all_local())
      throw InputError(kWho, "needs every expert's weights of layer " + std::to_string(layer) +
                                 " in this process (load the model without expert parallelism)");
    at::Tensor r = w.router_ED.to(at::kDouble);
    return at::linalg_vector_norm(r, 2, {1}).cpu().contiguous();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_rwn() { return std::make_unique<Rwn>(); }

}  // namespace moelab::criteria
