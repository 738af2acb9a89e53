// Rotary position embeddings as transformers computes them
// (modeling_rope_utils.py: default, linear, llama3, yarn and longrope inverse frequencies).
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "core/hf/model_config.h"

namespace moelab::models {

// Inverse frequencies [rotary_dim/2] (float32) and the attention scaling applied
// to cos/sin (1 except for yarn and longrope). seq_len: the positions of the batch, which
// only longrope reads (its long factors past original_max_position_embeddings).
std::pair<at::Tensor, double> rope_inv_freq(const hf::ModelConfig& config, int64_t seq_len = 0);

// cos, sin [T, A] for positions 0..T-1, in `dtype` (computed in float32).
std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& inv_freq, double attention_scaling, int64_t T,
                                               at::ScalarType dtype, at::Device device);

// x [B, heads, T, A] rotated by rotate_half convention: x*cos + rotate_half(x)*sin.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos_TA, const at::Tensor& sin_TA);

// Rotary embedding on interleaved pairs (x_2i, x_2i+1), each rotated by frequency i;
// the result is laid out [rotated evens, rotated odds] (transformers
// apply_rotary_pos_emb_interleave in models/deepseek_v3/modeling_deepseek_v3.py). ERNIE-4.5
// and DeepSeek-V2's complex rotation give the same pairs, interleaved, and so does Llama-4's
// (computed in the tables' dtype, float32 for it, and cast back to x's); q and k are
// permuted alike, so their dot products are the same. x [B, heads, T, A] (full rotation).
at::Tensor apply_rope_interleaved(const at::Tensor& x, const at::Tensor& cos_TA, const at::Tensor& sin_TA);

}  // namespace moelab::models
