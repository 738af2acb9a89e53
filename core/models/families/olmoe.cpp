// OLMoE (transformers `OlmoeForCausalLM`, model_type "olmoe";
// models/olmoe/modeling_olmoe.py): GQA whose q and k projections go through one
// RMSNorm each over all heads' channels together (q_norm [H*A], k_norm [G*A], before
// the heads are split and before RoPE), optionally clamped to [-clip_qkv, clip_qkv]
// with v (OlmoeAttention.forward); every layer a sparse MoE (64 experts, top-8 in
// OLMoE-1B-7B) of intermediate_size per expert, renormalising the top-k only when
// `norm_topk_prob` (OlmoeTopKRouter).
#include "core/hf/json_fields.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("num_experts") ? "num_experts" : "num_local_experts";
  c.num_experts_per_layer.assign(c.num_hidden_layers, f.positive_int(key));
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("intermediate_size");
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", false);
  c.attn.qk_norm = true;
  c.attn.qk_norm_per_head = false;
  if (auto clip = f.opt_number("clip_qkv")) {
    if (!(*clip > 0)) f.fail("clip_qkv", "must be a positive number or null");
    c.attn.clip_qkv = *clip;
  }
  // OlmoeConfig has no sliding window.
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();
}

}  // namespace

FamilySpec olmoe_family() {
  return family_spec("olmoe", "OlmoeForCausalLM", "olmoe", read_hparams, "num_experts");
}

}  // namespace moelab::models
