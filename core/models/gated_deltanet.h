// Gated DeltaNet linear attention (Yang, Kautz, Hatamizadeh 2024, arXiv 2412.06464), as
// Qwen3-Next and Qwen3.5-MoE run it (transformers models/qwen3_next/modeling_qwen3_next.py:
// Qwen3NextGatedDeltaNet, torch_chunk_gated_delta_rule, torch_recurrent_gated_delta_rule).
//
// Per value head, a state S [Dk, Dv] is carried along the sequence; token t with query
// q_t, key k_t (both L2-normalised, q also scaled by Dk^-0.5), value v_t, decay
// g_t <= 0 (log space) and write strength beta_t in (0, 1) does
//   S <- exp(g_t) S;   S <- S + k_t (beta_t (v_t - S^T k_t))^T;   o_t = S^T q_t.
// Shape letters: B batch, T time, Hk key heads, Hv value heads (a multiple of Hk: each
// key head serves Hv/Hk consecutive value heads), Dk, Dv head widths.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "core/hf/model_config.h"

namespace moelab::models {

struct AttentionWeights;  // core/models/moe_model.h
struct KvStep;            // core/models/blocks.h

// The delta rule token by token: the definition above, the reference the chunked form is
// tested against and the form one-token decoding steps use. q, k [B, T, Hk, Dk], v [B, T,
// Hv, Dv], g, beta [B, T, Hv]; state [B, Hv, Dk, Dv] float32 (undefined: zeros). Returns
// the outputs [B, T, Hv, Dv] in q's dtype and the final state (float32). Computed in
// float32; q and k are L2-normalised here (eps 1e-6, as FLA's kernel).
std::pair<at::Tensor, at::Tensor> gated_delta_rule_recurrent(const at::Tensor& q, const at::Tensor& k,
                                                             const at::Tensor& v, const at::Tensor& g,
                                                             const at::Tensor& beta, const at::Tensor& state = {});

// The same in chunks of `chunk` tokens (the WY/UT form of the DeltaNet paper: within a
// chunk, a unit lower-triangular solve turns the chunk's sequential updates into matmuls;
// between chunks, the state is carried). T need not be a multiple of chunk. Equal to
// gated_delta_rule_recurrent up to float32 rounding.
std::pair<at::Tensor, at::Tensor> gated_delta_rule_chunked(const at::Tensor& q, const at::Tensor& k,
                                                           const at::Tensor& v, const at::Tensor& g,
                                                           const at::Tensor& beta, int64_t chunk = 64,
                                                           const at::Tensor& state = {});

// The whole token mixer of a linear-attention layer on x [B, T, D] (after the input norm)
// -> [B, T, D]: input projections, causal depthwise convolution + SiLU over q|k|v, the
// chunked delta rule with beta = sigmoid(b) and g = -exp(A_log) softplus(a + dt_bias), the
// gated RMSNorm (norm(o) * silu(z), per value head) and out_proj. Sequences are
// right-padded: a valid position never sees a later (padding) one. With a cached step `kv`,
// each sequence continues from its cached convolution inputs and state
// (KvCache::conv_state, delta_state) over its own new tokens only, and leaves them updated.
at::Tensor linear_attention_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                                    int64_t layer, const KvStep* kv = nullptr);

}  // namespace moelab::models
