// The router of an MoE block: which experts each token's slots go to, with what gate,
// and what the experts see. Three rules, applied in order:
//
// 1. The family's router: softmax over all experts in float32, top-k, renormalised
//    over the k (Mixtral always; Qwen3 when norm_topk_prob).
//
// 2. NAEE dynamic skipping (Lu et al. 2024; github.com/Lucky-Lance/Expert_Sparsity,
//    model/modeling_mixtral.py), when the config has a beta for the layer: slot j >= 1
//    of a token is skipped when its router probability p_j < beta * p_0 (top-k
//    probabilities, descending, float32; for top-2 Mixtral: the second expert when
//    g2 < beta * g1). Skipped slots get gate 0 before the renormalisation (NAEE's code:
//    the kept gates sum to 1 again) or, with moelab_skip_renormalize false, after it.
//
// 3. Compressed experts (arXiv 2503.00634; hf::ModelConfig::compressed_main = k_m): a
//    token's top-k slots (descending gates g) split into k_m main slots and k_a = k - k_m
//    auxiliary ones. theta = sum over aux slots i of alpha_i theta_{e_i} with
//    alpha_i = g_i / sum_aux g; the main experts run on x * theta (element-wise) and the
//    block returns sum over main slots j of g'_j f_{e_j}(x * theta), g'_j = g_j / sum_main g
//    (our reading: the main gates renormalised to sum 1 over the main experts; the aux
//    experts' share is carried by theta, the paper gives no separate aux term). g are the
//    router's top-k gates after its own renormalisation (the ratios, and so alpha and g',
//    do not depend on it); theta and x*theta are computed on the tokens' process (theta
//    is replicated), so gradients reach theta, the router and x.
//
// Slots that do not run (skipped, auxiliary) are sent to the sentinel expert id E.
#include "models/blocks.h"

namespace moelab::models {
namespace {

// Skipped slots [N, K] bool, or undefined when the layer does not skip.
at::Tensor skip_slots(const at::Tensor& topk_p_NK, double beta) {
  if (beta <= 0 || topk_p_NK.size(1) < 2) return {};
  at::Tensor skip_NK = topk_p_NK < topk_p_NK.narrow(1, 0, 1) * beta;
  skip_NK.select(1, 0).fill_(false);
  return skip_NK;
}

}  // namespace

Routing route(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer) {
  const int64_t K = c.num_experts_per_tok, E = w.num_experts();
  Routing r;
  r.logits_NE = at::linear(x_ND, w.router_ED);
  at::Tensor probs_NE = at::softmax(r.logits_NE.to(at::kFloat), -1);
  auto [topk_w_NK, topk_ids_NK] = at::topk(probs_NE, K, -1);
  r.topk_ids_NK = topk_ids_NK;

  const at::Tensor skip_NK = skip_slots(topk_w_NK, c.skip_beta_of(layer));
  if (skip_NK.defined() && c.skip_renormalize) topk_w_NK = topk_w_NK.masked_fill(skip_NK, 0);
  if (c.norm_topk_prob) topk_w_NK = topk_w_NK / topk_w_NK.sum(-1, true);
  if (skip_NK.defined() && !c.skip_renormalize) topk_w_NK = topk_w_NK.masked_fill(skip_NK, 0);

  r.x_in_ND = x_ND;
  at::Tensor aux_NK;
  if (c.compressed()) {
    const int64_t Km = c.compressed_main, N = x_ND.size(0), D = x_ND.size(1);
    at::Tensor main_w = topk_w_NK.narrow(1, 0, Km), aux_w = topk_w_NK.narrow(1, Km, K - Km);
    at::Tensor alpha_NA = (aux_w / aux_w.sum(-1, true).clamp_min(1e-30)).to(x_ND.scalar_type());
    at::Tensor aux_ids = topk_ids_NK.narrow(1, Km, K - Km).reshape({-1});
    at::Tensor theta_ND =
        (alpha_NA.unsqueeze(-1) * w.theta_ED.index_select(0, aux_ids).view({N, K - Km, D})).sum(1);
    r.x_in_ND = x_ND * theta_ND;
    topk_w_NK = at::cat({main_w / main_w.sum(-1, true), at::zeros_like(aux_w)}, 1);
    aux_NK = (at::arange(K, topk_ids_NK.options()) >= Km).unsqueeze(0).expand({N, K});
  }
  r.gates_NK = topk_w_NK.to(x_ND.scalar_type());

  r.dispatch_ids_NK = skip_NK.defined() ? topk_ids_NK.masked_fill(skip_NK, E) : topk_ids_NK;
  if (aux_NK.defined()) r.dispatch_ids_NK = r.dispatch_ids_NK.masked_fill(aux_NK, E);
  return r;
}

}  // namespace moelab::models
