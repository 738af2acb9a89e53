// A MoeModel with fresh random weights, built from a Hugging Face config.json (moelab
// train): the weights transformers gives a model built with from_config
// (PreTrainedModel._init_weights and the Mixtral / Qwen3-MoE overrides), σ =
// config.json's "initializer_range" (default 0.02):
//
//   tensor (HF name)                     shape              init
//   model.embed_tokens.weight            [V, D]             N(0, σ²); row pad_token_id = 0
//                                                           (nn.Embedding padding_idx) when set
//   lm_head.weight                       [V, D]             N(0, σ²); the embedding when tied
//   lm_head.bias (Phi-3.5-MoE)           [V]                0
//   layers.{L}.input_layernorm,
//     post_attention_layernorm           [D]                1 (RMSNorm); LayerNorm bias 0
//   self_attn.q_proj / k_proj / v_proj   [H·A, D] / [G·A, D] / [G·A, D]   N(0, σ²)
//   self_attn.o_proj                     [D, H·A]           N(0, σ²)
//   self_attn.*_proj.bias (attn.bias)    [H·A] [G·A] [G·A] [D]  0
//   self_attn.q_norm / k_norm (Qwen3)    [A]                1
//   MoE layer: router                    [E, D]             N(0, σ²)
//     expert e: gate, up [F, D]; down [D, F]                N(0, σ²), each its own draw
//     compressed experts (moelab_compressed_experts): ces [E, 3, max(D, F)] (official)
//       or experts.theta [E, D] (moelab-v1)               1 (as moelab compress)
//   shared experts (Qwen2-MoE, DeepSeek): gate, up [S, D]; down [D, S];
//     Qwen2-MoE shared_expert_gate [1, D]    N(0, σ²), after the layer's routed experts
//   DeepSeek-V3 e_score_correction_bias [E]  0
//   multi-head latent attention (DeepSeek): q_a_proj, q_b_proj (or q_proj), kv_a_proj_with_mqa,
//     kv_b_proj, o_proj in this order        N(0, σ²); q_a/kv_a layernorms 1, biases 0
//   dense layer (Qwen3 mlp_only_layers, DeepSeek first_k_dense_replace): gate, up [F_dense, D];
//     down [D, F_dense]                      N(0, σ²)
//   model.norm.weight                    [D]                1
//
// In memory the experts are stacked as the loader stacks them (ExpertWeights:
// gate_up_EFD [E_local, 2F, D], gate rows first; down_EDF [E_local, D, F]).
//
// Determinism: the normal tensors are numbered k = 0, 1, ... in checkpoint order
// (embedding; per layer q, k, v, o, then router and each expert's gate, up, down, or
// the dense gate, up, down; lm_head last when untied) and tensor k is drawn in float32
// on the CPU from its own generator seeded with tensor_seed(seed, k), then converted
// to the compute dtype and device. A rank draws only the experts it holds (it counts
// the others) and gets exactly the values one process gets: the model does not depend
// on the rank count. Python reproduces tensor k with
//   torch.empty(shape).normal_(0, σ, generator=torch.Generator().manual_seed(tensor_seed(seed, k))).
#pragma once

#include <cstdint>
#include <string>

#include "core/hf/model_config.h"
#include "core/models/moe_model.h"

namespace moelab::models {

// σ of the normal init: "initializer_range" (absent or null: 0.02). Throws InputError
// naming config.json and the field when it is not a positive number.
double initializer_range(const hf::ModelConfig& config);

// The seed of tensor k: (splitmix64(seed) + k) mod 2^32, splitmix64 being the first
// output of Vigna's SplitMix64 seeded with `seed`. 32 bits because torch's CPU
// generator (mt19937) keeps only the low 32 bits of a seed; consecutive seeds give
// every tensor of a model its own stream (hashing names could collide).
uint64_t tensor_seed(uint64_t seed, int64_t k);

// Builds the model of `config` (as from models::load_config_file: family checked)
// with the init above. opts.dtype / opts.device: where the weights live;
// opts.dispatcher (expert parallelism, e.g. cluster::AllToAllDispatcher) decides
// which experts this process holds, as for load_model; opts.weights is ignored
// (a random model always has weights). The model's config.raw (what save_model
// writes) gets the values moelab assumed for absent fields: architectures,
// model_type, num_key_value_heads, head_dim, hidden_act, rms_norm_eps,
// max_position_embeddings, tie_word_embeddings, initializer_range and the RoPE theta,
// because transformers' class defaults differ for some (Mixtral: 8 key/value heads,
// rope_theta 1e6, rms_norm_eps 1e-5) and the saved model must be the trained one.
MoeModel random_init_model(const hf::ModelConfig& config, uint64_t seed, const LoadOptions& opts = {});

}  // namespace moelab::models
