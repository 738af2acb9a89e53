// Routed experts, computed grouped: the N*K (token, slot) rows are dispatched grouped
// by expert (models/expert_dispatch.h) so that each expert runs one [n, D] x [D, 2F]
// and one [n, F] x [F, D] matmul on its contiguous rows; combine weights the results
// by the gates and sums them back per token. The forward reads: route, dispatch,
// compute, combine.
#include "models/blocks.h"

namespace moelab::models {

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  return at::relu(x);
}

at::Tensor moe_forward(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer,
                       ExpertDispatcher& dispatcher, MoeObserver* observer) {
  const int64_t K = c.num_experts_per_tok, E = w.num_experts(), F = w.down_EDF.size(2);

  // Route: softmax over all experts in float32, top-k, optional renormalisation
  // (Mixtral always; Qwen3 when norm_topk_prob), gates cast to the compute dtype.
  at::Tensor logits_NE = at::linear(x_ND, w.router_ED);
  at::Tensor probs_NE = at::softmax(logits_NE.to(at::kFloat), -1);
  auto [topk_w_NK, topk_ids_NK] = at::topk(probs_NE, K, -1);
  if (c.norm_topk_prob) topk_w_NK = topk_w_NK / topk_w_NK.sum(-1, true);
  topk_w_NK = topk_w_NK.to(x_ND.scalar_type());
  if (observer) observer->on_routing(layer, logits_NE, topk_ids_NK, topk_w_NK);

  // Dispatch: rows grouped by local expert.
  DispatchedTokens d = dispatcher.dispatch(layer, E, x_ND, topk_ids_NK, topk_w_NK);

  // Compute: one matmul pair per local expert on its contiguous slice.
  at::Tensor y_MD = at::empty_like(d.x_MD);
  int64_t offset = 0;
  for (int64_t i = 0; i < int64_t(d.rows_per_local_expert.size()); ++i) {
    const int64_t n = d.rows_per_local_expert[i];
    if (n == 0) continue;
    at::Tensor xe = d.x_MD.narrow(0, offset, n);
    at::Tensor gu = at::matmul(xe, w.gate_up_EFD[i].t());
    at::Tensor act = activation(gu.narrow(1, 0, F), c.hidden_act) * gu.narrow(1, F, F);
    at::Tensor ye = at::matmul(act, w.down_EDF[i].t());
    if (observer)
      observer->on_expert(layer, w.first_local + i, d.tag_M.narrow(0, offset, n), act, ye, d.gate_M.narrow(0, offset, n));
    y_MD.narrow(0, offset, n).copy_(ye);
    offset += n;
  }

  // Combine: back to the tokens' process, weighted by the gates and summed.
  return dispatcher.combine(y_MD, d);
}

at::Tensor dense_mlp_forward(const DenseMlpWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND) {
  return at::linear(activation(at::linear(x_ND, w.gate_FD), c.hidden_act) * at::linear(x_ND, w.up_FD), w.down_DF);
}

}  // namespace moelab::models
