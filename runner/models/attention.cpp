#include "models/blocks.h"
#include "models/rope.h"

namespace moelab::models {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor attention_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                             const at::Tensor& cos_TA, const at::Tensor& sin_TA, const at::Tensor& mask_B1TT) {
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1), A = c.head_dim;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads;
  auto proj = [](const at::Tensor& x, const at::Tensor& wt, const at::Tensor& b) {
    return b.defined() ? at::linear(x, wt, b) : at::linear(x, wt);
  };
  at::Tensor q = proj(x_BTD, w.wq_HAD, w.bq).view({B, T, H, A});
  at::Tensor k = proj(x_BTD, w.wk_GAD, w.bk).view({B, T, G, A});
  at::Tensor v = proj(x_BTD, w.wv_GAD, w.bv).view({B, T, G, A});
  if (w.q_norm_A.defined()) {  // Qwen3: RMSNorm over each head's A channels
    q = rms_norm(q, w.q_norm_A, c.rms_norm_eps);
    k = rms_norm(k, w.k_norm_A, c.rms_norm_eps);
  }
  q = apply_rope(q.transpose(1, 2), cos_TA, sin_TA);  // [B, H, T, A]
  k = apply_rope(k.transpose(1, 2), cos_TA, sin_TA);  // [B, G, T, A]
  v = v.transpose(1, 2);
  if (G != H) {  // grouped-query attention: each kv head serves H/G query heads
    k = k.repeat_interleave(H / G, 1);
    v = v.repeat_interleave(H / G, 1);
  }
  at::Tensor out = at::scaled_dot_product_attention(q, k, v, mask_B1TT, 0.0, false, 1.0 / std::sqrt(double(A)));
  out = out.transpose(1, 2).reshape({B, T, H * A});
  return proj(out, w.wo_DHA, w.bo);
}

}  // namespace moelab::models
