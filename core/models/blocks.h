// The building blocks of the decoder forward (internal to models/). Shape letters
// as in moe_model.h.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/models/kv_cache.h"
#include "core/models/moe_model.h"

namespace moelab::models {

// One cached decoding step (core/models/kv_cache.h, forward_cached): where the new tokens sit
// and where their keys and values go.
struct KvStep {
  KvCache* cache = nullptr;
  std::vector<int64_t> past, lengths;  // cached and new tokens per sequence [B]
  int64_t keys = 0;                    // key slots the new queries see: max over b of past + lengths
  at::Tensor positions_BT;             // each new token's position, past[b] + t (int64, model device;
                                       // padding rows clamped to keys - 1)
  // Writes the new tokens' keys and values of `layer` (k [B, G, T, A], v [B, G, T, U]) into
  // the cache and returns the layer's first `keys` slots: [B, G, keys, A], [B, G, keys, U].
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v) const;
};

// RMSNorm as transformers computes it: normalise in float32, cast back, then scale.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Qwen3-Next's RMSNorm (hf::ModelConfig::norm_zero_centered): normalise and scale by
// (1 + weight) in float32, then cast back.
at::Tensor rms_norm_zero_centered(const at::Tensor& x, const at::Tensor& weight, double eps);
// A norm with a weight as the config's family computes it (rms_norm or the zero-centred one).
at::Tensor weighted_rms_norm(const at::Tensor& x, const at::Tensor& weight, const hf::ModelConfig& c);
// A decoder norm (input, post-attention, final): RMSNorm, or LayerNorm with its bias
// (undefined: none) when config.layer_norm.
at::Tensor decoder_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const hf::ModelConfig& c);

// The config's hidden_act (silu, gelu, gelu_pytorch_tanh, relu).
at::Tensor activation(const at::Tensor& x, const std::string& name);

// Self-attention of decoder layer `layer`. x [B, T, D]; mask [B, 1, T, T] bool (true =
// attend), or undefined for plain causal attention. With a cached step `kv`: the RoPE
// tables are per token [B, 1, T, A], the keys are the cache's (mask [B, 1, T, kv->keys]).
at::Tensor attention_forward(const AttentionWeights& w, const hf::ModelConfig& c, const at::Tensor& x_BTD,
                             const at::Tensor& cos_TA, const at::Tensor& sin_TA, const at::Tensor& mask_B1TT,
                             int64_t layer, const KvStep* kv = nullptr);

// The router's decision for the N tokens of one MoE layer (core/models/routing.cpp).
struct Routing {
  at::Tensor logits_NE;        // router logits [N, E] (compute dtype)
  at::Tensor topk_ids_NK;      // chosen experts [N, K] int64, descending probability
  at::Tensor gates_NK;         // the router's gates [N, K] (compute dtype); 0 for slots not run
  at::Tensor combine_NK;       // the weights of the experts' outputs in the combine [N, K]:
                               // gates_NK, or ones when the gates scale the input
  at::Tensor input_gates_NK;   // Llama-4 (router_gate_on_input): gates_NK, which scale each
                               // (token, slot) row's expert input; undefined otherwise
  at::Tensor dispatch_ids_NK;  // topk_ids with E for slots not run (NAEE-skipped, compressed auxiliary)
  at::Tensor x_in_NC;          // what the experts see: x [N, D], or with compressed experts
                               // (core/models/compressed_experts.h) x*c1 | x*c3 | c2 [N, 2D + F]
                               // (official) or x * theta [N, D] (moelab-v1)
};
Routing route(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer);

// Routed experts of one layer on the batch's valid tokens x [N, D] -> [N, D]:
// route, dispatch rows to the experts' owners, one matmul pair per local expert,
// combine (gate-weighted sum per token).
at::Tensor moe_forward(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer,
                       ExpertDispatcher& dispatcher, MoeObserver* observer);

at::Tensor dense_mlp_forward(const DenseMlpWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND);

// The shared experts of an MoE layer on x [N, D] -> [N, D] (times sigmoid(x . gate) when
// the family gates them: Qwen2MoeSparseMoeBlock.forward).
at::Tensor shared_expert_forward(const SharedExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND);

}  // namespace moelab::models
