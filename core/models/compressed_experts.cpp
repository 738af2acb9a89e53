// Compressed experts: the vectors' layout and the routing step (header: the variants).
//
// Official variant, as the authors' code computes it (github.com/neilwen987/Compressed-Experts-ts,
// modeling/modeling_olmoe.py at d31c93a):
//
//   self.ces = nn.Parameter(torch.ones(self.num_experts, 3, config.hidden_size))
//   routing_weights = softmax(router_logits, fp32); top-k; /= sum if norm_topk_prob; .to(dtype)
//   main slots [:n_main_experts], auxiliary slots [n_main_experts:top_k] (= the last n_ce)
//   normalized_weights = aux routing_weights / their sum
//   normalized_ce = (ces[aux experts] * normalized_weights).sum(dim=1)        # [3, D] per token
//   ce1 = normalized_ce[:, 0, :]; ce2 = normalized_ce[:, 1, :intermediate_size]; ce3 = normalized_ce[:, 2, :]
//   out += OlmoeCEMLP(x, ce1, ce2, ce3) * routing_weights[token, main slot]
//   OlmoeCEMLP: down_proj(act_fn(gate_proj(x * e1)) * up_proj(x * e3) * e2)
//
// So, for a token with gates g (the family's top-k gates after its own normalisation):
//   alpha_i = g_i / sum_aux g                  (aux gates renormalised among themselves)
//   c = sum_aux alpha_i ces[e_i]               (one triple per token, shared by its main experts)
//   y = sum_main g_j down_j(act(gate_j(x * c1)) * up_j(x * c3) * c2)
// The main experts keep their ORIGINAL gates g_j: nothing renormalises them over the main
// slots (for OLMoE, norm_topk_prob = false, they are plain softmax probabilities).
// Our readings where the code leaves a choice: ces is [E, 3, W], W = max(D, F), and c1, c3
// are its first D entries (the code has W = D, which fails for F > D, e.g. Mixtral; for
// F <= D this is exactly the code's tensor); like the code the gates are cast to the compute
// dtype before alpha is formed; the aux sum is clamped at 1e-30 (the code would divide by 0
// if every aux gate underflowed; no effect otherwise).
//
// moelab-v1 (moelab's first reading, before the code was checked): theta [E, D];
//   theta = sum_aux alpha_i theta[e_i] (alpha in float32), y = sum_main g'_j f_j(x * theta),
//   g'_j = g_j / sum_main g. No vector on the intermediate activation.
//
// Both are computed on the tokens' process (the vectors are replicated), so that gradients
// reach the vectors, the router and x through the dispatcher's differentiable moves.
#include "core/models/compressed_experts.h"

#include <algorithm>

#include "core/models/moe_model.h"

namespace moelab::models {

int64_t ces_width(const hf::ModelConfig& c) { return std::max(c.hidden_size, c.moe_intermediate_size); }

std::vector<int64_t> ce_vectors_shape(const hf::ModelConfig& c, int64_t E) {
  if (c.compressed_official()) return {E, 3, ces_width(c)};
  return {E, c.hidden_size};
}

at::Tensor& ce_vectors_of(ExpertWeights& w, const hf::ModelConfig& c) {
  return c.compressed_official() ? w.ces_E3W : w.theta_ED;
}

void init_ce_vectors(ExpertWeights& w, const hf::ModelConfig& c, int64_t E, const at::TensorOptions& options) {
  w.ces_E3W = at::Tensor();
  w.theta_ED = at::Tensor();
  if (c.compressed()) ce_vectors_of(w, c) = at::ones(ce_vectors_shape(c, E), options);
}

CompressedRouting compressed_routing(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND,
                                     const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK) {
  const int64_t K = topk_ids_NK.size(1), Km = c.compressed_main, Ka = K - Km, N = x_ND.size(0), D = x_ND.size(1);
  const at::Tensor aux_ids = topk_ids_NK.narrow(1, Km, Ka).reshape({-1});
  CompressedRouting r;
  if (c.compressed_official()) {
    const int64_t F = w.down_EDF.size(2), W = w.ces_E3W.size(2);
    at::Tensor g_NK = topk_w_NK.to(x_ND.scalar_type());
    at::Tensor aux_w = g_NK.narrow(1, Km, Ka);
    at::Tensor alpha_NA = aux_w / aux_w.sum(-1, true).clamp_min(1e-30);
    at::Tensor ce_N3W =
        (alpha_NA.view({N, Ka, 1, 1}) * w.ces_E3W.index_select(0, aux_ids).view({N, Ka, 3, W})).sum(1);
    at::Tensor c1 = ce_N3W.select(1, 0).narrow(1, 0, D), c2 = ce_N3W.select(1, 1).narrow(1, 0, F),
               c3 = ce_N3W.select(1, 2).narrow(1, 0, D);
    r.x_in_NC = at::cat({x_ND * c1, x_ND * c3, c2}, 1);
    r.gates_NK = at::cat({g_NK.narrow(1, 0, Km), at::zeros_like(aux_w)}, 1);
    return r;
  }
  at::Tensor main_w = topk_w_NK.narrow(1, 0, Km), aux_w = topk_w_NK.narrow(1, Km, Ka);
  at::Tensor alpha_NA = (aux_w / aux_w.sum(-1, true).clamp_min(1e-30)).to(x_ND.scalar_type());
  at::Tensor theta_ND = (alpha_NA.unsqueeze(-1) * w.theta_ED.index_select(0, aux_ids).view({N, Ka, D})).sum(1);
  r.x_in_NC = x_ND * theta_ND;
  r.gates_NK = at::cat({main_w / main_w.sum(-1, true), at::zeros_like(aux_w)}, 1).to(x_ND.scalar_type());
  return r;
}

}  // namespace moelab::models
