// Random: seeded random expert scores, the baseline for the criteria of MC-Suite
// ("Finding Fantastic Experts in MoEs", arXiv 2504.05586) and of Chowdhury et al.
// ("A Provably Effective Method for Pruning Experts in Fine-tuned Sparse
// Mixture-of-Experts", ICML 2024); not itself a criterion of either paper.
//
// Reading implemented: scores are i.i.d. uniform in [0, 1), float64, drawn from a
// local ATen CPU generator (ATen's own mt19937, the same on every platform)
// seeded with seed * 1000003 + layer (unsigned, wrapping). Same (seed, layer) =>
// identical scores; different layers => different scores. Min-Random and
// Max-Random are both uniformly random drops.
//
// needs() is empty: the expert count E of the layer comes from the model when one is
// given (its layer, or config.num_experts_per_layer), else from the calibration
// statistics of the MoE layer.
#include <ATen/CPUGeneratorImpl.h>

#include "core/common/error.h"
#include "criteria/criterion.h"

namespace moelab::criteria {

namespace {

const char* const kWho = "criterion Random";

int64_t experts_of(const ScoreInputs& in, int64_t moe_index, int64_t layer) {
  if (in.model != nullptr) {
    if (layer >= 0 && layer < static_cast<int64_t>(in.model->layers.size()) && in.model->layers[layer].moe &&
        in.model->layers[layer].moe->router_ED.defined())
      return in.model->layers[layer].moe->num_experts();
    const auto& per_layer = in.model->config.num_experts_per_layer;
    if (layer >= 0 && layer < static_cast<int64_t>(per_layer.size()) && per_layer[layer] > 0) return per_layer[layer];
    throw InputError(kWho, "layer " + std::to_string(layer) + " is not an MoE layer of the model");
  }
  if (in.stats != nullptr) {
    if (moe_index < 0 || moe_index >= static_cast<int64_t>(in.stats->layers.size()))
      throw InputError(kWho, "MoE layer index " + std::to_string(moe_index) + " is not in the calibration statistics");
    const auto& s = in.stats->layers[moe_index];
    for (const at::Tensor* t : {&s.tokens_E, &s.gate_sum_E, &s.act_norm_sum_E, &s.out_norm_sum_E,
                                &s.gate_out_norm_sum_E, &s.coactivation_EE, &s.token_bitmap_EW, &s.act_sum_EF,
                                &s.act_sq_sum_EF, &s.easyep_sum_E, &s.act_norm_sq_sum_E})
      if (t->defined()) return t->size(0);
  }
  throw InputError(kWho, "cannot tell how many experts layer " + std::to_string(layer) +
                             " has: give the model or calibration statistics");
}

class RandomBaseline : public Criterion {
 public:
  std::string name() const override { return "Random"; }
  std::string description() const override {
    return "seeded uniform random scores, deterministic per (seed, layer) (baseline)";
  }
  std::vector<std::string> needs() const override { return {}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t layer) const override {
    const int64_t E = experts_of(in, moe_index, layer);
    const uint64_t s = in.seed * uint64_t{1000003} + static_cast<uint64_t>(layer);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s);
    // (no lock here: at::rand takes the generator's mutex itself)
    return at::rand({E}, gen, at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  }
};

}  // namespace

std::unique_ptr<Criterion> make_random_baseline() { return std::make_unique<RandomBaseline>(); }

}  // namespace moelab::criteria
