// Phi-3.5-MoE (transformers `PhimoeForCausalLM`, model_type "phimoe";
// models/phimoe/modeling_phimoe.py), one of the two models of the compressed-experts paper:
//   - nn.LayerNorm (weight and bias) before attention, before the MoE block and at the end
//     (hf::ModelConfig::layer_norm), eps rms_norm_eps; lm_head with a bias when
//     `lm_head_bias`;
//   - GQA attention with q/k/v/o biases when `attention_bias` (Phi-3.5-MoE: true),
//     rotate-half RoPE, LongRoPE on the Hub model (short/long factors and mscales,
//     core/models/rope.cpp), a sliding window when config.json sets one;
//   - every layer MoE, Mixtral's experts and tensor names (block_sparse_moe.experts.{E}.w1/w3/w2);
//   - the sparsemixer router at inference (PhimoeTopKRouter, sparsemixer(); top-2 only,
//     router_jitter_noise as its eps; core/models/routing.cpp). moelab trains through these
//     inference gates (finetune): transformers' training samples experts (Gumbel) and
//     backpropagates Heun's estimator instead, which moelab does not reproduce.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("num_local_experts") ? "num_local_experts" : "num_experts";
  const int64_t e = f.positive_int(key);
  c.num_experts_per_layer.assign(c.num_hidden_layers, e);
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  // sparsemixer() returns two experts per token whatever top_k says.
  if (c.num_experts_per_tok != 2)
    f.fail("num_experts_per_tok", "must be 2 (Phi-3.5-MoE's sparsemixer routes every token to two experts)");
  if (e < 2) f.fail(key, "must be at least 2 (sparsemixer chooses two experts)");
  c.moe_intermediate_size = f.positive_int("intermediate_size");
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-5);  // PhimoeConfig's default
  c.layer_norm = true;
  c.lm_head_bias = f.boolean("lm_head_bias", false);
  c.attn.out_bias = c.attn.bias;
  c.attn.qk_norm = false;
  c.attn.sliding_layers.clear();
  if (!hf::names_rope_key(c.raw, "rope_theta")) c.rope.theta = 1000000.0;  // PhimoeConfig's default
  if (c.rope.type != "default" && c.rope.type != "longrope")
    f.fail("rope_scaling", "\"" + c.rope.type + "\" is not supported for Phi-3.5-MoE (default or longrope)");
  if (c.rope.type == "longrope" && (!c.rope.short_mscale || !c.rope.long_mscale))
    f.fail("rope_scaling", "longrope needs short_mscale and long_mscale (PhimoeRotaryEmbedding scales by them)");
  const double jitter = f.number("router_jitter_noise", 0.01);
  if (!(jitter >= 0 && jitter < 1)) f.fail("router_jitter_noise", "must be in [0, 1)");
  c.router.jitter_eps = jitter;
  c.router.scoring = hf::RouterScoring::kSoftmax;
  c.router.topk_method = hf::TopKMethod::kSparsemixer;
  c.router.norm_topk_prob = false;
  c.router.fp32 = false;
  c.router.scaling_factor = 1.0;
}

}  // namespace

FamilySpec phimoe_family() {
  FamilySpec s = family_spec("phimoe", "PhimoeForCausalLM", "phimoe", read_hparams, "num_local_experts");
  use_block_sparse_moe_names(s.names);
  s.names.router_fused = "model.layers.{L}.mlp.router.weight";  // transformers 5's PhimoeSparseMoeBlock.router
  return s;
}

}  // namespace moelab::models
