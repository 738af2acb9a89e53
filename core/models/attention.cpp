// Self-attention as transformers computes it: grouped-query attention (Mixtral,
// Qwen2/3-MoE, OLMoE; gpt-oss with sinks) and multi-head latent attention (DeepSeek-V2/V3).
#include <limits>
#include <optional>
#include <tuple>

#include "core/models/blocks.h"
#include "core/models/gated_deltanet.h"
#include "core/models/rope.h"

namespace moelab::models {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor rms_norm_zero_centered(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  return (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps) * (1.0 + weight.to(at::kFloat))).to(x.scalar_type());
}

at::Tensor weighted_rms_norm(const at::Tensor& x, const at::Tensor& weight, const hf::ModelConfig& c) {
  return c.norm_zero_centered ? rms_norm_zero_centered(x, weight, c.rms_norm_eps) : rms_norm(x, weight, c.rms_norm_eps);
}

at::Tensor decoder_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const hf::ModelConfig& c) {
  if (!c.layer_norm) return weighted_rms_norm(x, weight, c);
  // nn.LayerNorm in the compute dtype (Phi-3.5-MoE).
  return at::layer_norm(x, {x.size(-1)}, weight, bias, c.rms_norm_eps);
}

namespace {

// An undefined mask is no mask (scaled_dot_product_attention then runs is_causal).
std::optional<at::Tensor> optional_mask(const at::Tensor& mask) {
  return mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
}

at::Tensor proj(const at::Tensor& x, const at::Tensor& wt, const at::Tensor& b) {
  return b.defined() ? at::linear(x, wt, b) : at::linear(x, wt);
}

// Llama4TextL2Norm: x / RMS(x) over the last axis in float32, no weight, cast back.
at::Tensor l2_norm(const at::Tensor& x, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  return (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
}

// Llama-4 after the q/k/v projections, q [B, H, T, A] and k [B, G, T, A]
// (Llama4TextAttention.forward): on RoPE layers the complex rotation, then the L2 norm
// when use_qk_norm; on NoPE layers neither, and with attn.temperature_tuning each query
// scaled by log1p(floor((p + 1) / floor_scale)) * attn_scale + 1 (float32, cast back).
// RoPE's pair layout [evens, odds] is a permutation of transformers' interleaved one,
// applied to q and k alike (dot products and the L2 norm do not see it).
void llama4_qk(const hf::ModelConfig& c, int64_t layer, at::Tensor& q, at::Tensor& k, const at::Tensor& cos_TA,
               const at::Tensor& sin_TA, const KvStep* kv) {
  if (c.attn.uses_rope(layer)) {
    q = apply_rope_interleaved(q, cos_TA, sin_TA);
    k = apply_rope_interleaved(k, cos_TA, sin_TA);
    if (c.attn.qk_l2_norm) {
      q = l2_norm(q, c.rms_norm_eps);
      k = l2_norm(k, c.rms_norm_eps);
    }
  } else if (c.attn.temperature_tuning) {
    // Positions 0..T-1, or each new token's own under a cache ([B, 1, T, 1]).
    const int64_t T = q.size(2);
    at::Tensor pos = kv ? kv->positions_BT.to(at::kFloat).unsqueeze(1).unsqueeze(-1)
                        : at::arange(T, at::TensorOptions().dtype(at::kFloat).device(q.device())).view({1, 1, T, 1});
    at::Tensor scale = at::log1p(at::floor((pos + 1.0) / c.attn.floor_scale)) * c.attn.attn_scale + 1.0;
    q = (q * scale).to(q.scalar_type());
  }
}

// Multi-head latent attention (DeepseekV3Attention.forward). Shape letters: Q
// qk_head_dim, O qk_nope, P qk_rope, U v_head_dim, C kv_lora_rank. A cache keeps the
// expanded keys and values (as transformers' DynamicCache does), not the latent.
at::Tensor mla_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                       const at::Tensor& cos_TP, const at::Tensor& sin_TP, const at::Tensor& mask_B1TT, int64_t layer,
                       const KvStep* kv) {
  const hf::MlaConfig& a = *c.mla;
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1), H = c.num_attention_heads;
  const int64_t O = a.qk_nope_head_dim, P = a.qk_rope_head_dim, U = a.v_head_dim, C = a.kv_lora_rank;
  // q_a_layernorm and kv_a_layernorm are DeepseekV3RMSNorm(width) at its default eps 1e-6,
  // whatever rms_norm_eps says (GLM-4.7-Flash: 1e-5).
  constexpr double kLatentNormEps = 1e-6;
  at::Tensor q = a.q_lora_rank > 0 ? at::linear(rms_norm(proj(x_BTD, w.wq_a_RD, w.bq_a), w.q_a_norm_R, kLatentNormEps),
                                                w.wq_HAD)
                                   : at::linear(x_BTD, w.wq_HAD);
  q = q.view({B, T, H, O + P}).transpose(1, 2);  // [B, H, T, Q]
  at::Tensor q_pass = q.narrow(-1, 0, O), q_rot = q.narrow(-1, O, P);
  at::Tensor ckv_BTX = proj(x_BTD, w.wkv_a_CD, w.bkv_a);  // [B, T, C + P]
  at::Tensor kv_BTC = rms_norm(ckv_BTX.narrow(-1, 0, C), w.kv_a_norm_C, kLatentNormEps);
  at::Tensor k_rot = ckv_BTX.narrow(-1, C, P).view({B, 1, T, P});
  if (a.rope_interleave) {
    q_rot = apply_rope_interleaved(q_rot, cos_TP, sin_TP);
    k_rot = apply_rope_interleaved(k_rot, cos_TP, sin_TP);
  } else {
    q_rot = apply_rope(q_rot, cos_TP, sin_TP);
    k_rot = apply_rope(k_rot, cos_TP, sin_TP);
  }
  at::Tensor kv_BHTX = at::linear(kv_BTC, w.wkv_b).view({B, T, H, O + U}).transpose(1, 2);  // [B, H, T, O + U]
  at::Tensor k = at::cat({kv_BHTX.narrow(-1, 0, O), k_rot.expand({B, H, T, P})}, -1);
  at::Tensor v = kv_BHTX.narrow(-1, O, U);
  q = at::cat({q_pass, q_rot}, -1);
  if (kv) std::tie(k, v) = kv->append(layer, k, v);
  at::Tensor out = at::scaled_dot_product_attention(q, k, v.contiguous(), optional_mask(mask_B1TT), 0.0, !mask_B1TT.defined(),
                                                    a.softmax_scale);
  out = out.transpose(1, 2).reshape({B, T, H * U});
  return proj(out, w.wo_DHA, w.bo);
}

// Attention with sinks (gpt-oss; transformers models/gpt_oss/modeling_gpt_oss.py
// eager_attention_forward): each head's learned sink logit s_h joins the softmax over the
// keys and its probability is dropped, p_j = exp(a_j) / (exp(s_h) + sum_i exp(a_i)), so
// a head may attend to nothing. Written out (scaled_dot_product_attention has no sink);
// masked keys get -inf, and a row whose keys are all masked attends only to its sink.
at::Tensor attention_with_sinks(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& mask_B1TT, const at::Tensor& sinks_H, double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Tk = k.size(2);
  at::Tensor scores = at::matmul(q, k.transpose(2, 3)) * scale;  // [B, H, T, Tk]
  // Undefined mask: causal (no sequence padded).
  const at::Tensor allowed = mask_B1TT.defined()
                                 ? mask_B1TT
                                 : at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(q.device())).tril();
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  at::Tensor sinks = sinks_H.to(scores.scalar_type()).view({1, H, 1, 1}).expand({B, H, T, 1});
  at::Tensor combined = at::cat({scores, sinks}, -1);
  combined = combined - std::get<0>(combined.max(-1, /*keepdim=*/true));
  at::Tensor probs = at::softmax(combined, -1).narrow(-1, 0, Tk);
  return at::matmul(probs.to(v.scalar_type()), v);
}

}  // namespace

at::Tensor attention_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                             const at::Tensor& cos_TA, const at::Tensor& sin_TA, const at::Tensor& mask_B1TT,
                             int64_t layer, const KvStep* kv) {
  if (c.uses_linear_attention(layer)) return linear_attention_forward(w, c, x_BTD, layer, kv);
  if (c.mla) return mla_forward(w, c, x_BTD, cos_TA, sin_TA, mask_B1TT, layer, kv);
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1), A = c.head_dim;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads;
  at::Tensor q = proj(x_BTD, w.wq_HAD, w.bq);
  at::Tensor gate;  // Qwen3-Next's output gate: q_proj gives [q_h, gate_h] per head
  if (c.attn.output_gate) {
    const at::Tensor qg = q.view({B, T, H, 2 * A});
    gate = qg.narrow(-1, A, A).reshape({B, T, H * A});
    q = qg.narrow(-1, 0, A).reshape({B, T, H * A});
  }
  at::Tensor k = proj(x_BTD, w.wk_GAD, w.bk);
  at::Tensor v = proj(x_BTD, w.wv_GAD, w.bv);
  if (w.q_norm_A.defined() && !c.attn.qk_norm_per_head) {  // OLMoE: one RMSNorm over all heads' channels
    q = weighted_rms_norm(q, w.q_norm_A, c);
    k = weighted_rms_norm(k, w.k_norm_A, c);
  }
  if (c.attn.clip_qkv) {  // OLMoE
    q = q.clamp(-*c.attn.clip_qkv, *c.attn.clip_qkv);
    k = k.clamp(-*c.attn.clip_qkv, *c.attn.clip_qkv);
    v = v.clamp(-*c.attn.clip_qkv, *c.attn.clip_qkv);
  }
  q = q.view({B, T, H, A});
  k = k.view({B, T, G, A});
  v = v.view({B, T, G, A});
  if (w.q_norm_A.defined() && c.attn.qk_norm_per_head) {  // Qwen3: RMSNorm over each head's A channels
    q = weighted_rms_norm(q, w.q_norm_A, c);
    k = weighted_rms_norm(k, w.k_norm_A, c);
  }
  if (c.attn.rope_complex) {  // Llama-4
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
    llama4_qk(c, layer, q, k, cos_TA, sin_TA, kv);
  } else {
    const auto rope = c.attn.rope_interleaved ? apply_rope_interleaved : apply_rope;  // ERNIE-4.5: interleaved pairs
    q = rope(q.transpose(1, 2), cos_TA, sin_TA);  // [B, H, T, A]
    k = rope(k.transpose(1, 2), cos_TA, sin_TA);  // [B, G, T, A]
  }
  v = v.transpose(1, 2);
  if (kv) std::tie(k, v) = kv->append(layer, k, v);
  if (G != H) {  // grouped-query attention: each kv head serves H/G query heads
    k = k.repeat_interleave(H / G, 1);
    v = v.repeat_interleave(H / G, 1);
  }
  at::Tensor out = w.sinks_H.defined()
                       ? attention_with_sinks(q, k, v, mask_B1TT, w.sinks_H, 1.0 / std::sqrt(double(A)))
                       : at::scaled_dot_product_attention(q, k, v, optional_mask(mask_B1TT), 0.0, !mask_B1TT.defined(),
                                                          1.0 / std::sqrt(double(A)));
  out = out.transpose(1, 2).reshape({B, T, H * A});
  if (gate.defined()) out = out * at::sigmoid(gate);
  return proj(out, w.wo_DHA, w.bo);
}

}  // namespace moelab::models
