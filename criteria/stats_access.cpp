#include "criteria/stats_access.h"

#include "core/common/error.h"

namespace moelab::criteria {

const results::LayerStats& layer_stats(const ScoreInputs& in, int64_t moe_index, const std::string& group,
                                       const std::string& criterion) {
  if (!in.stats)
    throw InputError("criterion " + criterion, "needs calibration statistics: pass --stats FILE from moelab calibrate");
  if (!in.stats->collected.count(group))
    throw InputError("criterion " + criterion, "the statistics file lacks \"" + group +
                                                   "\"; collect it with: moelab calibrate ... --criteria " + criterion);
  if (moe_index < 0 || moe_index >= int64_t(in.stats->layers.size()))
    throw InputError("criterion " + criterion, "the statistics file has no MoE layer #" + std::to_string(moe_index));
  return in.stats->layers[size_t(moe_index)];
}

at::Tensor per_routed_token(const at::Tensor& sum_E, const at::Tensor& tokens_E, double power) {
  at::Tensor n = tokens_E.to(at::kDouble);
  at::Tensor denom = power == 1.0 ? n.clamp_min(1) : n.clamp_min(1).pow(power);
  return at::where(n > 0, sum_E.to(at::kDouble) / denom, at::zeros_like(n));
}

at::Tensor token_bitmap(const ScoreInputs& in, int64_t moe_index, const std::string& criterion) {
  const auto& s = layer_stats(in, moe_index, results::stat::kTokenIds, criterion);
  const int64_t V = in.stats->vocab_size;
  at::Tensor bm = s.token_bitmap_EW.to(at::kByte).contiguous();
  if (V <= 0 || bm.dim() != 2 || bm.size(1) != (V + 7) / 8)
    throw InputError("criterion " + criterion, "token_bitmap_EW of MoE layer #" + std::to_string(moe_index) +
                                                   " does not have ceil(vocab_size / 8) bytes per row (vocab_size " +
                                                   std::to_string(V) + ")");
  return bm;
}

const models::ExpertWeights& layer_experts(const models::MoeModel* model, int64_t layer, const std::string& criterion,
                                           const std::string& which) {
  const std::string who = "criterion " + criterion;
  if (model == nullptr) throw InputError(who, "needs the " + which + "'s weights (none was given)");
  if (layer < 0 || layer >= static_cast<int64_t>(model->layers.size()) || !model->layers[layer].moe)
    throw InputError(who, "layer " + std::to_string(layer) + " is not an MoE layer of the " + which);
  const auto& w = *model->layers[layer].moe;
  if (w.num_novices() > 0)
    throw InputError(who, "the " + which + " has MoNE novices (experts without weights): score the model they were "
                          "made from");
  if (!w.router_ED.defined() || !w.gate_up_EFD.defined() || !w.down_EDF.defined() || !w.all_local())
    throw InputError(who, "needs every expert's weights of layer " + std::to_string(layer) + " of the " + which +
                              " in this process (load it without expert parallelism)");
  return w;
}

}  // namespace moelab::criteria
