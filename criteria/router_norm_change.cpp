// RouterNormChange: the change of router row norms between a pre-trained and a
// fine-tuned checkpoint.
//
// Paper: Chowdhury et al., "A Provably Effective Method for Pruning Experts in
// Fine-tuned Sparse Mixture-of-Experts", ICML 2024.
//
// Score of expert s: ||W_r^ft[s, :]||_2 - ||W_r^pre[s, :]||_2, the SIGNED change of
// the L2 norm of the router row of s from the pre-trained to the fine-tuned model.
// The paper keeps the experts with the largest change (i.e. Min-RouterNormChange
// drops the experts to prune).
//
// Reading implemented: ScoreInputs::model is the FINE-TUNED checkpoint and
// ScoreInputs::second the PRE-TRAINED one; experts are matched by position in the
// layer (both checkpoints must have the same expert count in the layer). The
// paper's pruned-experts-output-zero / no-renormalisation procedure belongs to the
// pruning step, not to the score. Computed in float64.
#include "core/common/error.h"
#include "criteria/criterion.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {

namespace {

const char* const kWho = "criterion RouterNormChange";

class RouterNormChange : public Criterion {
 public:
  std::string name() const override { return "RouterNormChange"; }
  std::string description() const override {
    return "||W_r^ft[s,:]||_2 - ||W_r^pre[s,:]||_2, fine-tuned vs pre-trained router rows (Chowdhury et al. 2024)";
  }
  std::vector<std::string> needs() const override { return {kNeedsWeights, kNeedsSecondCheckpoint}; }

  at::Tensor score_layer(const ScoreInputs& in, int64_t /*moe_index*/, int64_t layer) const override {
    if (in.model == nullptr)
      throw InputError(kWho, "needs the fine-tuned model's weights (no model was given)");
    if (in.second == nullptr)
      throw InputError(kWho,
                       "needs two checkpoints: the fine-tuned model as the model and the pre-trained model it "
                       "was fine-tuned from as the second checkpoint (none was given)");
    const at::Tensor ft = layer_experts(in.model, layer, name(), "fine-tuned model").router_ED;
    const at::Tensor pre = layer_experts(in.second, layer, name(), "pre-trained (second) checkpoint").router_ED;
    if (ft.size(0) != pre.size(0))
      throw InputError(kWho, "layer " + std::to_string(layer) + ": the fine-tuned model has " +
                                 std::to_string(ft.size(0)) + " experts but the pre-trained (second) checkpoint has " +
                                 std::to_string(pre.size(0)) +
                                 "; pass the pre-trained checkpoint this model was fine-tuned from, unpruned");
    at::Tensor n_ft = at::linalg_vector_norm(ft.to(at::kDouble), 2, {1}).cpu();
    at::Tensor n_pre = at::linalg_vector_norm(pre.to(at::kDouble), 2, {1}).cpu();
    return (n_ft - n_pre).contiguous();
  }

};

}  // namespace

std::unique_ptr<Criterion> make_router_norm_change() { return std::make_unique<RouterNormChange>(); }

}  // namespace moelab::criteria
