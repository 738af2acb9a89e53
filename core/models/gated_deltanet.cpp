// Gated DeltaNet (core/models/gated_deltanet.h), written after transformers'
// torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule and
// Qwen3NextGatedDeltaNet.forward (models/qwen3_next/modeling_qwen3_next.py, 5.24), in
// libtorch ops.
#include "core/models/gated_deltanet.h"

#include <cmath>
#include <limits>

#include "core/models/blocks.h"
#include "core/models/moe_model.h"

namespace moelab::models {
namespace {

// l2norm of transformers (FLA's): x * rsqrt(sum(x^2) + eps) over the last axis.
at::Tensor l2_normalise(const at::Tensor& x) { return x * at::rsqrt((x * x).sum(-1, /*keepdim=*/true) + 1e-6); }

struct Prepared {
  at::Tensor q, k, v, g, beta;  // [B, Hv, T, Dk|Dv] and [B, Hv, T], float32
};

// Grouped value heads (each key head repeated over its Hv/Hk value heads), heads first,
// float32, q and k L2-normalised, q scaled by Dk^-0.5.
Prepared prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                 const at::Tensor& beta) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.size(1) == q.size(1),
              "delta rule: q, k [B, T, Hk, Dk] and v [B, T, Hv, Dv]");
  const int64_t Hk = k.size(2), Hv = v.size(2);
  TORCH_CHECK(Hv % Hk == 0, "delta rule: value heads must be a multiple of key heads");
  at::Tensor qq = q, kk = k;
  if (Hv != Hk) {
    qq = qq.repeat_interleave(Hv / Hk, 2);
    kk = kk.repeat_interleave(Hv / Hk, 2);
  }
  auto heads_first = [](const at::Tensor& x) { return x.transpose(1, 2).to(at::kFloat).contiguous(); };
  Prepared p;
  p.q = l2_normalise(heads_first(qq)) * (1.0 / std::sqrt(double(q.size(3))));
  p.k = l2_normalise(heads_first(kk));
  p.v = heads_first(v);
  p.g = heads_first(g);
  p.beta = heads_first(beta);
  return p;
}

at::Tensor initial_state(const at::Tensor& state, int64_t B, int64_t Hv, int64_t Dk, int64_t Dv, at::Device device) {
  if (state.defined()) return state.to(at::kFloat).clone();
  return at::zeros({B, Hv, Dk, Dv}, at::TensorOptions().dtype(at::kFloat).device(device));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> gated_delta_rule_recurrent(const at::Tensor& q, const at::Tensor& k,
                                                             const at::Tensor& v, const at::Tensor& g,
                                                             const at::Tensor& beta, const at::Tensor& state) {
  const Prepared p = prepare(q, k, v, g, beta);
  const int64_t B = p.v.size(0), Hv = p.v.size(1), T = p.v.size(2), Dk = p.k.size(3), Dv = p.v.size(3);
  at::Tensor S = initial_state(state, B, Hv, Dk, Dv, v.device());
  at::Tensor out = at::zeros_like(p.v);
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor q_t = p.q.select(2, t), k_t = p.k.select(2, t), v_t = p.v.select(2, t);
    S = S * p.g.select(2, t).exp().unsqueeze(-1).unsqueeze(-1);
    const at::Tensor predicted = (S * k_t.unsqueeze(-1)).sum(-2);               // S^T k  [B, Hv, Dv]
    const at::Tensor delta = (v_t - predicted) * p.beta.select(2, t).unsqueeze(-1);
    S = S + k_t.unsqueeze(-1) * delta.unsqueeze(-2);                            // + k delta^T
    out.select(2, t).copy_((S * q_t.unsqueeze(-1)).sum(-2));                    // S^T q
  }
  return {out.transpose(1, 2).contiguous().to(q.scalar_type()), S};
}

std::pair<at::Tensor, at::Tensor> gated_delta_rule_chunked(const at::Tensor& q, const at::Tensor& k,
                                                           const at::Tensor& v, const at::Tensor& g,
                                                           const at::Tensor& beta, int64_t chunk,
                                                           const at::Tensor& state) {
  TORCH_CHECK(chunk >= 1, "delta rule: chunk size must be positive");
  Prepared p = prepare(q, k, v, g, beta);
  const int64_t B = p.v.size(0), Hv = p.v.size(1), T = p.v.size(2), Dk = p.k.size(3), Dv = p.v.size(3);
  // Pad to whole chunks: padded tokens have k = 0 and beta = 0, so they write nothing.
  const int64_t pad = (chunk - T % chunk) % chunk, n = (T + pad) / chunk;
  if (pad > 0) {
    for (at::Tensor* x : {&p.q, &p.k, &p.v}) *x = at::constant_pad_nd(*x, {0, 0, 0, pad});
    for (at::Tensor* x : {&p.g, &p.beta}) *x = at::constant_pad_nd(*x, {0, pad});
  }
  auto chunks = [&](const at::Tensor& x) { return x.reshape({B, Hv, n, chunk, x.size(-1)}); };
  const at::Tensor qc = chunks(p.q), kc = chunks(p.k);
  const at::Tensor k_beta = chunks(p.k * p.beta.unsqueeze(-1)), v_beta = chunks(p.v * p.beta.unsqueeze(-1));
  const at::Tensor cum = p.g.reshape({B, Hv, n, chunk}).cumsum(-1);  // log decay from the chunk start
  // decay[i, j] = exp(cum_i - cum_j) for j <= i within a chunk, 0 above the diagonal.
  const at::Tensor upper = at::ones({chunk, chunk}, at::TensorOptions().dtype(at::kBool).device(v.device())).triu(1);
  const at::Tensor decay = (cum.unsqueeze(-1) - cum.unsqueeze(-2))
                               .masked_fill(upper, -std::numeric_limits<double>::infinity())
                               .exp();
  // The chunk's sequential updates as one unit lower-triangular system (I + tril(beta K K^T
  // decay, -1)) U = (beta V | beta K exp(cum)); its diagonal is taken as 1 (unitriangular).
  const at::Tensor system = at::matmul(k_beta, kc.transpose(-1, -2)) * decay;
  const at::Tensor intra = at::matmul(qc, kc.transpose(-1, -2)) * decay;  // within-chunk attention
  const at::Tensor new_values =
      at::linalg_solve_triangular(system, v_beta, /*upper=*/false, /*left=*/true, /*unitriangular=*/true);
  const at::Tensor k_cumdecay = at::linalg_solve_triangular(system, k_beta * cum.exp().unsqueeze(-1), false, true, true);
  const at::Tensor q_decayed = qc * cum.exp().unsqueeze(-1);
  const at::Tensor k_to_end = kc * (cum.narrow(-1, chunk - 1, 1) - cum).exp().unsqueeze(-1);
  const at::Tensor chunk_decay = cum.select(-1, chunk - 1).exp().unsqueeze(-1).unsqueeze(-1);  // [B, Hv, n, 1, 1]
  at::Tensor S = initial_state(state, B, Hv, Dk, Dv, v.device());
  at::Tensor out = at::empty_like(new_values);
  for (int64_t i = 0; i < n; ++i) {
    // The part of the chunk's values the carried state already predicts is taken out
    // (the delta rule); what is left is read by the chunk's queries and written to the state.
    const at::Tensor v_new = new_values.select(2, i) - at::matmul(k_cumdecay.select(2, i), S);
    out.select(2, i).copy_(at::matmul(q_decayed.select(2, i), S) + at::matmul(intra.select(2, i), v_new));
    S = S * chunk_decay.select(2, i) + at::matmul(k_to_end.select(2, i).transpose(-1, -2), v_new);
  }
  out = out.reshape({B, Hv, n * chunk, Dv}).narrow(2, 0, T);
  return {out.transpose(1, 2).contiguous().to(q.scalar_type()), S};
}

at::Tensor linear_attention_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                                    int64_t layer, const KvStep* kv) {
  const auto& a = *c.linear_attn;
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1);
  const int64_t Hk = a.num_k_heads, Hv = a.num_v_heads, Dk = a.k_head_dim, Dv = a.v_head_dim;
  const int64_t K = a.key_dim(), V = a.value_dim(), C = a.conv_dim(), W = a.conv_kernel, r = Hv / Hk;
  at::Tensor mixed_BTC, z, b, alpha;
  if (w.in_qkvz.defined()) {
    // Qwen3-Next: per key head [q, k, its r value heads, their r gates] and [b x r, a x r]
    // (fix_query_key_value_ordering).
    auto qkvz = at::linear(x_BTD, w.in_qkvz).view({B, T, Hk, 2 * Dk + 2 * r * Dv}).split_with_sizes({Dk, Dk, r * Dv, r * Dv}, 3);
    auto ba = at::linear(x_BTD, w.in_ba).view({B, T, Hk, 2 * r}).split_with_sizes({r, r}, 3);
    mixed_BTC = at::cat({qkvz[0].reshape({B, T, K}), qkvz[1].reshape({B, T, K}), qkvz[2].reshape({B, T, V})}, -1);
    z = qkvz[3].reshape({B, T, Hv, Dv});
    b = ba[0].reshape({B, T, Hv});
    alpha = ba[1].reshape({B, T, Hv});
  } else {  // Qwen3.5
    mixed_BTC = at::linear(x_BTD, w.in_qkv);
    z = at::linear(x_BTD, w.in_z).view({B, T, Hv, Dv});
    b = at::linear(x_BTD, w.in_b);
    alpha = at::linear(x_BTD, w.in_a);
  }
  const at::Tensor beta = b.sigmoid();
  const at::Tensor g = -w.A_log_V.to(at::kFloat).exp() * at::softplus(alpha.to(at::kFloat) + w.dt_bias_V);
  const at::Tensor weight = w.conv_C1W;
  auto split = [&](const at::Tensor& conv_BCT) {  // -> q, k [., T', Hk, Dk], v [., T', Hv, Dv]
    at::Tensor m = activation(conv_BCT, c.hidden_act).transpose(1, 2);
    const int64_t n = m.size(0), t = m.size(1);
    return std::make_tuple(m.narrow(-1, 0, K).reshape({n, t, Hk, Dk}), m.narrow(-1, K, K).reshape({n, t, Hk, Dk}),
                           m.narrow(-1, 2 * K, V).reshape({n, t, Hv, Dv}));
  };
  at::Tensor core;  // [B, T, Hv, Dv]
  if (!kv) {
    // Causal depthwise convolution: left padding W - 1, the first T outputs.
    const at::Tensor conv = at::conv1d(mixed_BTC.transpose(1, 2), weight, at::Tensor(), at::IntArrayRef{1}, at::IntArrayRef{W - 1}, at::IntArrayRef{1}, C).narrow(2, 0, T);
    auto [q, k, v] = split(conv);
    core = gated_delta_rule_chunked(q, k, v, g, beta).first;
  } else {
    // Each sequence from its cached state over its own new tokens (right-padded rows stay 0).
    KvCache& cache = *kv->cache;
    at::Tensor& conv_state = cache.conv_state.at(layer);    // [B, C, W - 1]: the last inputs seen
    at::Tensor& delta_state = cache.delta_state.at(layer);  // [B, Hv, Dk, Dv] float32
    if (!conv_state.defined()) conv_state = at::zeros({B, C, W - 1}, mixed_BTC.options());
    if (!delta_state.defined())
      delta_state = at::zeros({B, Hv, Dk, Dv}, at::TensorOptions().dtype(at::kFloat).device(x_BTD.device()));
    core = at::zeros({B, T, Hv, Dv}, x_BTD.options());
    for (int64_t s = 0; s < B; ++s) {
      const int64_t n = kv->lengths.at(s);
      at::Tensor inputs = at::cat({conv_state.narrow(0, s, 1), mixed_BTC.narrow(0, s, 1).narrow(1, 0, n).transpose(1, 2)}, 2);
      const at::Tensor conv = at::conv1d(inputs, weight, at::Tensor(), at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, C);  // [1, C, n]
      conv_state.narrow(0, s, 1).copy_(inputs.narrow(2, inputs.size(2) - (W - 1), W - 1));
      auto [q, k, v] = split(conv);
      const at::Tensor gs = g.narrow(0, s, 1).narrow(1, 0, n), bs = beta.narrow(0, s, 1).narrow(1, 0, n);
      const at::Tensor st = delta_state.narrow(0, s, 1);
      // A few tokens (decoding): token by token; a prompt: in chunks.
      auto [o, S] = n <= 8 ? gated_delta_rule_recurrent(q, k, v, gs, bs, st) : gated_delta_rule_chunked(q, k, v, gs, bs, 64, st);
      delta_state.narrow(0, s, 1).copy_(S);
      core.narrow(0, s, 1).narrow(1, 0, n).copy_(o);
    }
  }
  // Gated RMSNorm per value head (Qwen3NextRMSNormGated): w * norm(o) cast back, times silu(z)
  // in float32, cast back.
  const at::Tensor of = core.to(at::kFloat);
  const at::Tensor normed = (of * at::rsqrt(of.pow(2).mean(-1, /*keepdim=*/true) + c.rms_norm_eps)).to(core.scalar_type());
  const at::Tensor y = (w.linear_norm_Dv * normed * at::silu(z.to(at::kFloat))).to(core.scalar_type());
  return at::linear(y.reshape({B, T, V}), w.linear_out_DV);
}

}  // namespace moelab::models
