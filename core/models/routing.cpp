// The router of an MoE block: which experts each token's slots go to, with what gate,
// and what the experts see. Three rules, applied in order:
//
// 1. The family's router: softmax over all experts in float32, top-k, renormalised
//    over the k (Mixtral always; Qwen3, Qwen2-MoE, OLMoE when norm_topk_prob). DeepSeek
//    (hf::ModelConfig, "Router variants"): V3 scores each expert with a sigmoid, adds
//    e_score_correction_bias for the choice only, keeps the topk_group best of n_group
//    expert groups (group score: sum of its two best biased scores), renormalises the
//    unbiased scores of the chosen k and scales them by routed_scaling_factor; V2
//    (softmax) keeps the groups with the best max score under group_limited_greedy and
//    scales without renormalising. transformers picks the k with topk(sorted=False); the
//    set is the same, and moelab orders a token's k slots by descending gate (so slot 0
//    is the top-1 expert for NAEE skipping and compressed experts). gpt-oss
//    (GptOssTopKRouter): logits from a router with a bias, top-k of the logits, softmax
//    over those k (hf::ModelConfig::softmax_over_topk; the same gates as the full softmax
//    renormalised over the k, computed in transformers' order). Phi-3.5-MoE's sparsemixer
//    (hf::ModelConfig, topk_method "sparsemixer"; sparsemixer() at inference in
//    transformers models/phimoe/modeling_phimoe.py): two slots, each the argmax of the
//    logits not yet chosen, gated by its softmax over the logits within a relative distance
//    2 * jitter_eps of it; slot 0 is the argmax even when slot 1's gate is larger. ERNIE-4.5
//    (Ernie4_5_MoeTopKRouter): softmax, correction bias for the choice only, gates
//    renormalised over max(sum, moe_norm_min).
//
// 2. NAEE dynamic skipping (Lu et al. 2024; github.com/Lucky-Lance/Expert_Sparsity,
//    model/modeling_mixtral.py), when the config has a beta for the layer: slot j >= 1
//    of a token is skipped when its router probability p_j < beta * p_0 (top-k
//    probabilities, descending, float32; for top-2 Mixtral: the second expert when
//    g2 < beta * g1). Skipped slots get gate 0 before the renormalisation (NAEE's code:
//    the kept gates sum to 1 again) or, with moelab_skip_renormalize false, after it.
//
// 3. Compressed experts (arXiv 2503.00634; hf::ModelConfig::compressed_main = k_m): a
//    token's top-k slots (descending gates g) split into k_m main slots and k - k_m
//    auxiliary ones that do not run; their vectors modulate the main experts, whose
//    gates are the original g (official variant) or g renormalised over the main slots
//    (moelab-v1). g are the router's top-k gates after its own normalisation. The
//    formulas and their source: core/models/compressed_experts.cpp.
//
// Llama-4 (hf::ModelConfig::router_gate_on_input): top-k of the raw logits, gate =
// sigmoid(logit); the gate multiplies the expert's input row (x * g) and the expert's
// output is added with weight 1 (Routing::input_gates_NK, combine_NK).
//
// Slots that do not run (skipped, auxiliary) are sent to the sentinel expert id E.
#include <limits>
#include <tuple>

#include "core/models/blocks.h"
#include "core/models/compressed_experts.h"

namespace moelab::models {
namespace {

// Skipped slots [N, K] bool, or undefined when the layer does not skip.
at::Tensor skip_slots(const at::Tensor& topk_p_NK, double beta) {
  if (beta <= 0 || topk_p_NK.size(1) < 2) return {};
  at::Tensor skip_NK = topk_p_NK < topk_p_NK.narrow(1, 0, 1) * beta;
  skip_NK.select(1, 0).fill_(false);
  return skip_NK;
}

// The k experts of each token under DeepSeek's rules [N, K] (any order). scores [N, E]
// float32; bias [E] or undefined.
at::Tensor select_experts(const at::Tensor& scores_NE, const at::Tensor& bias_E, const hf::ModelConfig& c, int64_t K) {
  at::Tensor choice_NE = bias_E.defined() ? scores_NE + bias_E.to(at::kFloat) : scores_NE;
  const int64_t N = scores_NE.size(0), E = scores_NE.size(1), G = c.router.n_group;
  if (c.router.topk_method == hf::TopKMethod::kGroupLimitedGreedy || c.router.topk_method == hf::TopKMethod::kNoauxTc) {
    // Experts are split into G equal groups (checked when the layer is loaded or pruned).
    at::Tensor grouped_NGS = choice_NE.view({N, G, E / G});
    at::Tensor group_NG = c.router.topk_method == hf::TopKMethod::kNoauxTc ? std::get<0>(grouped_NGS.topk(2, -1)).sum(-1)
                                                      : std::get<0>(grouped_NGS.max(-1));
    at::Tensor keep_NG = at::zeros_like(group_NG, at::kBool).scatter_(1, std::get<1>(group_NG.topk(c.router.topk_group, -1)), true);
    at::Tensor keep_NE = keep_NG.unsqueeze(-1).expand({N, G, E / G}).reshape({N, E});
    // V2 masks dropped groups to 0 (scores are positive), V3 to -inf.
    choice_NE = choice_NE.masked_fill(keep_NE.logical_not(),
                                      c.router.topk_method == hf::TopKMethod::kNoauxTc ? -std::numeric_limits<double>::infinity() : 0.0);
  }
  return std::get<1>(at::topk(choice_NE, K, -1));
}

// Phi-3.5-MoE's sparsemixer at inference (not training: no Gumbel sampling, no
// Heun multipliers). logits [N, E] float32; returns the two slots' gates and ids [N, 2].
std::pair<at::Tensor, at::Tensor> sparsemixer(const at::Tensor& s_NE, double jitter_eps) {
  const double inf = std::numeric_limits<double>::infinity();
  // One slot: the argmax of `masked` (logits already chosen are -inf), gated by its
  // softmax over the logits s with (max - s) / max(|s|, max) <= 2 eps.
  auto slot = [&](const at::Tensor& masked_NE) {
    auto [max_N1, ind_N1] = masked_NE.max(-1, /*keepdim=*/true);
    at::Tensor factor_NE = s_NE.abs().clamp_min(max_N1);
    at::Tensor far_NE = (max_N1 - s_NE) / factor_NE > 2 * jitter_eps;
    at::Tensor gates_NE = at::softmax(masked_NE.masked_fill(far_NE, -inf), -1);
    return std::make_pair(gates_NE.gather(-1, ind_N1), ind_N1);
  };
  auto [w0, i0] = slot(s_NE);
  auto [w1, i1] = slot(s_NE.scatter(-1, i0, -inf));
  return {at::cat({w0, w1}, -1), at::cat({i0, i1}, -1)};
}

}  // namespace

Routing route(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer) {
  const int64_t K = c.num_experts_per_tok, E = w.num_experts();
  Routing r;
  // gpt-oss's router has a bias (undefined for the other families: no bias).
  const at::Tensor& b = w.router_bias_E;
  at::Tensor logits_NE = c.router.fp32 ? at::linear(x_ND.to(at::kFloat), w.router_ED.to(at::kFloat),
                                                    b.defined() ? b.to(at::kFloat) : b)
                                       : at::linear(x_ND, w.router_ED, b);
  r.logits_NE = logits_NE.to(x_ND.scalar_type());
  at::Tensor scores_NE = c.router.scoring == hf::RouterScoring::kSigmoid ? at::sigmoid(logits_NE.to(at::kFloat))
                                                     : at::softmax(logits_NE.to(at::kFloat), -1);
  at::Tensor topk_w_NK, topk_ids_NK;
  if (c.router.topk_method == hf::TopKMethod::kSparsemixer) {
    std::tie(topk_w_NK, topk_ids_NK) = sparsemixer(logits_NE.to(at::kFloat), c.router.jitter_eps);
  } else if (c.router.gate_on_input) {
    // Llama-4 (Llama4Router): top-k of the raw logits (compute dtype), gate = sigmoid of
    // each chosen logit in float32; no renormalisation, no scaling (read_hparams).
    at::Tensor top_logits_NK;
    std::tie(top_logits_NK, topk_ids_NK) = at::topk(logits_NE, K, -1);
    topk_w_NK = at::sigmoid(top_logits_NK.to(at::kFloat));
  } else if (c.router.softmax_over_topk) {
    // gpt-oss (GptOssTopKRouter): top-k of the logits, then a softmax over those k.
    at::Tensor top_logits_NK;
    std::tie(top_logits_NK, topk_ids_NK) = at::topk(logits_NE.to(at::kFloat), K, -1);
    topk_w_NK = at::softmax(top_logits_NK, -1);
  } else if (c.router.topk_method == hf::TopKMethod::kGreedy && !w.correction_bias_E.defined()) {
    std::tie(topk_w_NK, topk_ids_NK) = at::topk(scores_NE, K, -1);
  } else {
    topk_ids_NK = select_experts(scores_NE, w.correction_bias_E, c, K);
    topk_w_NK = scores_NE.gather(1, topk_ids_NK);
    at::Tensor order_NK = at::argsort(topk_w_NK, /*stable=*/true, -1, /*descending=*/true);
    topk_ids_NK = topk_ids_NK.gather(1, order_NK);
    topk_w_NK = topk_w_NK.gather(1, order_NK);
  }
  r.topk_ids_NK = topk_ids_NK;

  const at::Tensor skip_NK = skip_slots(topk_w_NK, c.skip_beta_of(layer));
  if (skip_NK.defined() && c.skip_renormalize) topk_w_NK = topk_w_NK.masked_fill(skip_NK, 0);
  // DeepSeek-V3 adds 1e-20 to the denominator (sigmoid scores need not sum to 1).
  if (c.router.norm_topk_prob)
    topk_w_NK = c.router.scoring == hf::RouterScoring::kSigmoid ? topk_w_NK / (topk_w_NK.sum(-1, true) + 1e-20)
                : c.router.norm_topk_min > 0       ? topk_w_NK / topk_w_NK.sum(-1, true).clamp_min(c.router.norm_topk_min)
                                            : topk_w_NK / topk_w_NK.sum(-1, true);
  if (c.router.scaling_factor != 1.0) topk_w_NK = topk_w_NK * c.router.scaling_factor;
  if (skip_NK.defined() && !c.skip_renormalize) topk_w_NK = topk_w_NK.masked_fill(skip_NK, 0);

  r.x_in_NC = x_ND;
  r.gates_NK = topk_w_NK.to(x_ND.scalar_type());
  at::Tensor aux_NK;
  if (c.compressed()) {
    CompressedRouting ce = compressed_routing(w, c, x_ND, topk_ids_NK, topk_w_NK);
    r.x_in_NC = ce.x_in_NC;
    r.gates_NK = ce.gates_NK;
    aux_NK = (at::arange(K, topk_ids_NK.options()) >= c.compressed_main).unsqueeze(0).expand({x_ND.size(0), K});
  }

  if (c.router.gate_on_input) {  // the gates scale the experts' input; outputs are summed
    r.input_gates_NK = r.gates_NK;
    r.combine_NK = at::ones_like(r.gates_NK);
  } else {
    r.combine_NK = r.gates_NK;
  }
  r.dispatch_ids_NK = skip_NK.defined() ? topk_ids_NK.masked_fill(skip_NK, E) : topk_ids_NK;
  if (aux_NK.defined()) r.dispatch_ids_NK = r.dispatch_ids_NK.masked_fill(aux_NK, E);
  return r;
}

}  // namespace moelab::models
