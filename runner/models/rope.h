// Rotary position embeddings as transformers computes them
// (modeling_rope_utils.py: default, linear, llama3 and yarn inverse frequencies).
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "hf/model_config.h"

namespace moelab::models {

// Inverse frequencies [rotary_dim/2] (float32) and the attention scaling applied
// to cos/sin (1 except for yarn).
std::pair<at::Tensor, double> rope_inv_freq(const hf::ModelConfig& config);

// cos, sin [T, A] for positions 0..T-1, in `dtype` (computed in float32).
std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& inv_freq, double attention_scaling, int64_t T,
                                               at::ScalarType dtype, at::Device device);

// x [B, heads, T, A] rotated by rotate_half convention: x*cos + rotate_half(x)*sin.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos_TA, const at::Tensor& sin_TA);

}  // namespace moelab::models
