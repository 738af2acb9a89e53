// Routed experts, computed grouped: the N*K (token, slot) pairs are sorted by expert
// so that each expert runs one [n, D] x [D, 2F] and one [n, F] x [F, D] matmul on
// its contiguous rows; results are weighted by the gates and summed back per token.
#include "models/blocks.h"

namespace moelab::models {

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  return at::relu(x);
}

at::Tensor moe_forward(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer,
                       MoeObserver* observer) {
  const int64_t N = x_ND.size(0), K = c.num_experts_per_tok, E = w.num_experts();
  const int64_t F = w.down_EDF.size(2);

  // Route: softmax over all experts in float32, top-k, optional renormalisation
  // (Mixtral always; Qwen3 when norm_topk_prob), gates cast to the compute dtype.
  at::Tensor logits_NE = at::linear(x_ND, w.router_ED);
  at::Tensor probs_NE = at::softmax(logits_NE.to(at::kFloat), -1);
  auto [topk_w_NK, topk_ids_NK] = at::topk(probs_NE, K, -1);
  if (c.norm_topk_prob) topk_w_NK = topk_w_NK / topk_w_NK.sum(-1, true);
  topk_w_NK = topk_w_NK.to(x_ND.scalar_type());
  if (observer) observer->on_routing(layer, logits_NE, topk_ids_NK, topk_w_NK);

  // Permute: (token, slot) pairs sorted by expert id (stable, so each expert's
  // tokens stay in token order).
  at::Tensor flat_ids = topk_ids_NK.reshape(-1);
  at::Tensor order = std::get<1>(at::sort(flat_ids, /*stable=*/true, 0, false));
  at::Tensor token_of = at::floor_divide(order, K);
  at::Tensor gate_of = topk_w_NK.reshape(-1).index_select(0, order);
  at::Tensor counts = at::bincount(flat_ids, {}, E).cpu();
  at::Tensor x_sorted = x_ND.index_select(0, token_of);
  at::Tensor y_sorted = at::empty_like(x_sorted);

  // Compute: one matmul pair per expert on its contiguous slice.
  const int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t offset = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = cnt[e];
    if (n == 0) continue;
    at::Tensor xe = x_sorted.narrow(0, offset, n);
    at::Tensor gu = at::matmul(xe, w.gate_up_EFD[e].t());
    at::Tensor act = activation(gu.narrow(1, 0, F), c.hidden_act) * gu.narrow(1, F, F);
    at::Tensor ye = at::matmul(act, w.down_EDF[e].t());
    if (observer)
      observer->on_expert(layer, e, token_of.narrow(0, offset, n), act, ye, gate_of.narrow(0, offset, n));
    y_sorted.narrow(0, offset, n).copy_(ye);
    offset += n;
  }

  // Combine: weight by gates and scatter-add back to tokens.
  at::Tensor out = at::zeros_like(x_ND);
  out.index_add_(0, token_of, y_sorted * gate_of.unsqueeze(1));
  (void)N;
  return out;
}

at::Tensor dense_mlp_forward(const DenseMlpWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND) {
  return at::linear(activation(at::linear(x_ND, w.gate_FD), c.hidden_act) * at::linear(x_ND, w.up_FD), w.down_DF);
}

}  // namespace moelab::models
