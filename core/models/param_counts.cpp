// Parameter counts from the config alone (so `inspect` needs no weights) or from a
// loaded model (which may have been pruned).
#include "core/models/compressed_experts.h"
#include "core/models/moe_model.h"

namespace moelab::models {

ParamCounts count_params(const hf::ModelConfig& c) {
  ParamCounts p;
  const int64_t D = c.hidden_size, A = c.head_dim, H = c.num_attention_heads, G = c.num_key_value_heads;
  // Compressed experts: only the k_m main experts of a token run.
  const int64_t F = c.moe_intermediate_size, k = c.compressed() ? c.compressed_main : c.num_experts_per_tok;
  p.embedding = c.vocab_size * D;
  p.lm_head = (c.tie_word_embeddings ? 0 : c.vocab_size * D) + (c.lm_head_bias ? c.vocab_size : 0);
  const int64_t norm = c.layer_norm ? 2 * D : D;  // LayerNorm: weight and bias
  p.norms = norm;  // final norm
  int64_t active_experts = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (c.uses_linear_attention(l)) {  // Gated DeltaNet: projections, conv, dt_bias, A_log, out_proj
      const auto& a = *c.linear_attn;
      const int64_t K = a.key_dim(), V = a.value_dim(), Hv = a.num_v_heads;
      p.attention += (2 * K + 2 * V + 2 * Hv) * D + a.conv_dim() * a.conv_kernel + 2 * Hv + V * D;
      p.norms += a.v_head_dim;
    } else if (c.mla) {
      const hf::MlaConfig& a = *c.mla;
      const int64_t R = a.q_lora_rank, C = a.kv_lora_rank, P = a.qk_rope_head_dim;
      p.attention += R > 0 ? R * D + H * a.qk_head_dim() * R : H * a.qk_head_dim() * D;
      p.attention += (C + P) * D + H * (a.qk_nope_head_dim + a.v_head_dim) * C + D * H * a.v_head_dim;
      if (c.attn.bias) p.attention += (R > 0 ? R : 0) + C + P;
      if (c.attn.out_bias) p.attention += D;
      p.norms += R + C;
    } else {
      const int64_t Q = c.attn.output_gate ? 2 : 1;  // Qwen3-Next's q_proj also gives the output gate
      p.attention += D * H * A * (Q + 1) + D * G * A * 2;
      if (c.attn.bias) p.attention += Q * H * A + 2 * G * A;
      if (c.attn.out_bias) p.attention += D;
      if (c.attn.sinks) p.attention += H;
      if (c.attn.qk_norm) p.norms += c.attn.qk_norm_per_head ? 2 * A : (H + G) * A;
    }
    p.norms += 2 * norm;
    const int64_t E = c.num_experts_per_layer[l];
    if (E > 0) {
      p.routers += E * D;
      // MoNE novices: a router row and a vector [D] each, counted with the routers.
      p.routers += 2 * c.novices_of(l) * D;
      if (c.router.correction_bias) p.routers += E;
      if (c.router.bias) p.routers += E;
      // Compressed experts' vectors (one [3, W] or [D] per expert, used by every token).
      if (c.compressed_official()) p.routers += E * 3 * ces_width(c);
      else if (c.compressed()) p.routers += E * D;
      const int64_t bias = c.expert.bias ? 2 * F + D : 0;  // gpt-oss gate_up and down biases
      p.routed_experts += E * (3 * D * F + bias);
      active_experts += k * (3 * D * F + bias);
      p.shared_experts += 3 * D * c.shared_expert_intermediate_size + (c.shared_expert_gate ? D : 0);
    } else {
      p.dense_mlp += 3 * D * c.dense_intermediate_size;
    }
  }
  p.total = p.embedding + p.lm_head + p.norms + p.attention + p.routers + p.routed_experts + p.shared_experts +
            p.dense_mlp;
  p.active_per_token = p.total - p.routed_experts + active_experts;
  return p;
}

ParamCounts count_params(const MoeModel& m) {
  hf::ModelConfig c = m.config;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    c.num_experts_per_layer[l] = m.layers[l].moe ? m.layers[l].moe->num_real() : 0;
  return count_params(c);
}

WeightBytes weight_bytes(const MoeModel& m) {
  auto nb = [](const at::Tensor& t) { return t.defined() ? t.numel() * int64_t(t.element_size()) : int64_t(0); };
  WeightBytes w;
  w.shared = nb(m.embed_VD) + nb(m.final_norm_D) + nb(m.final_norm_bias_D) + nb(m.lm_head_bias_V) +
             (m.config.tie_word_embeddings ? 0 : nb(m.lm_head_VD));
  for (const auto& L : m.layers) {
    const auto& a = L.attn;
    for (const auto* t : {&L.attn_norm_D, &L.ffn_norm_D, &L.attn_norm_bias_D, &L.ffn_norm_bias_D, &a.wq_HAD, &a.wk_GAD, &a.wv_GAD, &a.wo_DHA, &a.bq, &a.bk,
                          &a.bv, &a.bo, &a.q_norm_A, &a.k_norm_A, &a.wq_a_RD, &a.q_a_norm_R, &a.bq_a, &a.wkv_a_CD,
                          &a.kv_a_norm_C, &a.bkv_a, &a.wkv_b, &a.sinks_H, &a.in_qkvz, &a.in_ba, &a.in_qkv, &a.in_z,
                          &a.in_b, &a.in_a, &a.conv_C1W, &a.dt_bias_V, &a.A_log_V, &a.linear_norm_Dv, &a.linear_out_DV})
      w.shared += nb(*t);
    if (L.shared)
      w.shared += nb(L.shared->mlp.gate_FD) + nb(L.shared->mlp.up_FD) + nb(L.shared->mlp.down_DF) + nb(L.shared->gate_1D);
    if (L.moe) {
      w.shared += nb(L.moe->router_ED) + nb(L.moe->ces_E3W) + nb(L.moe->theta_ED) + nb(L.moe->correction_bias_E) + nb(L.moe->router_bias_E);
      w.experts += nb(L.moe->gate_up_EFD) + nb(L.moe->down_EDF) + nb(L.moe->gate_up_bias_EF) + nb(L.moe->down_bias_ED);
    }
    if (L.mlp) w.shared += nb(L.mlp->gate_FD) + nb(L.mlp->up_FD) + nb(L.mlp->down_DF);
  }
  return w;
}

}  // namespace moelab::models
