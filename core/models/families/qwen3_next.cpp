// Qwen3-Next (transformers `Qwen3NextForCausalLM`, model_type "qwen3_next";
// models/qwen3_next/modeling_qwen3_next.py) and Qwen3.5/3.6-MoE's text model
// (`Qwen3_5MoeForCausalLM`, model_type "qwen3_5_moe_text"; models/qwen3_5_moe/):
//   - hybrid token mixers: `layer_types` marks each layer "linear_attention" (Gated
//     DeltaNet: core/models/gated_deltanet.h) or "full_attention"; absent, every
//     `full_attention_interval`-th layer (default 4) is full attention (the config classes'
//     __post_init__);
//   - gated full attention (Qwen3NextAttention): q_proj gives each head's queries and a
//     gate, interleaved per head; q/k RMSNorm per head; RoPE over the first
//     head_dim * partial_rotary_factor channels (default 0.25); output times sigmoid(gate);
//   - every RMSNorm scales by (1 + w) (Qwen3NextRMSNorm, zero-centred weights);
//   - MoE blocks as Qwen2-MoE's: softmax top-k router (Qwen3-Next renormalises when
//     norm_topk_prob, default true; Qwen3.5 always), one shared expert scaled by
//     sigmoid(shared_expert_gate . x); Qwen3-Next's dense layers where mlp_only_layers /
//     decoder_sparse_step say (Qwen3.5: every layer MoE).
// The two differ in the linear attention's input projections only: Qwen3-Next fuses them
// (in_proj_qkvz, in_proj_ba, grouped by key head), Qwen3.5 keeps four (in_proj_qkv, _z,
// _b, _a). Qwen3.5's multimodal RoPE (mrope_section) rotates text tokens as plain RoPE
// (all three position rows are the token's position), so text models ignore it.
// Multi-token-prediction weights ("mtp.*") are skipped as transformers skips them.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"
#include "core/models/sparse_layer_map.h"

namespace moelab::models {
namespace {

void read_hybrid_common(hf::ModelConfig& c, const hf::JsonFields& f, bool fused_projections) {
  const int64_t L = c.num_hidden_layers;
  if (c.linear_layers.empty() && !f.has("layer_types")) {
    const int64_t interval = f.opt_int("full_attention_interval").value_or(4);
    if (interval < 1) f.fail("full_attention_interval", "must be a positive integer");
    for (int64_t l = 0; l < L; ++l) c.linear_layers.push_back((l + 1) % interval != 0);
  }
  if (!c.attn.chunked_layers.empty()) f.fail("layer_types", "\"chunked_attention\" is not a " + c.model_type + " layer type");
  for (bool s : c.attn.sliding_layers)
    if (s) f.fail("layer_types", "\"sliding_attention\" is not a " + c.model_type + " layer type");
  c.attn.sliding_layers.clear();
  c.attn.sliding_window.reset();
  hf::ModelConfig::LinearAttention a;
  a.num_k_heads = f.opt_int("linear_num_key_heads").value_or(16);
  a.num_v_heads = f.opt_int("linear_num_value_heads").value_or(32);
  a.k_head_dim = f.opt_int("linear_key_head_dim").value_or(128);
  a.v_head_dim = f.opt_int("linear_value_head_dim").value_or(128);
  a.conv_kernel = f.opt_int("linear_conv_kernel_dim").value_or(4);
  if (a.num_k_heads <= 0) f.fail("linear_num_key_heads", "must be a positive integer");
  if (a.num_v_heads <= 0 || a.num_v_heads % a.num_k_heads != 0)
    f.fail("linear_num_value_heads", "must be a positive multiple of linear_num_key_heads (" +
                                         std::to_string(a.num_k_heads) + ")");
  if (a.k_head_dim <= 0) f.fail("linear_key_head_dim", "must be a positive integer");
  if (a.v_head_dim <= 0) f.fail("linear_value_head_dim", "must be a positive integer");
  if (a.conv_kernel < 1) f.fail("linear_conv_kernel_dim", "must be a positive integer");
  a.fused_projections = fused_projections;
  c.linear_attn = a;
  c.attn.output_gate = true;
  c.norm_zero_centered = true;
  c.attn.qk_norm = true;
  c.attn.qk_norm_per_head = true;
  c.attn.out_bias = c.attn.bias;  // o_proj has the q/k/v projections' bias setting
  if (!hf::names_rope_key(c.raw, "partial_rotary_factor")) c.rope.partial_rotary_factor = 0.25;
  c.shared_expert_intermediate_size = f.positive_int("shared_expert_intermediate_size");
  c.shared_expert_gate = true;
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
}

void read_qwen3_next(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  read_hybrid_common(c, f, /*fused_projections=*/true);
  const int64_t e = f.positive_int("num_experts");
  if (c.num_experts_per_tok > e) f.fail("num_experts_per_tok", "exceeds the num_experts (" + std::to_string(e) + ")");
  c.num_experts_per_layer = qwen_moe_layer_experts(f, c, e);
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", true);
}

void read_qwen3_5_moe(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  read_hybrid_common(c, f, /*fused_projections=*/false);
  const int64_t e = f.positive_int("num_experts");
  if (c.num_experts_per_tok > e) f.fail("num_experts_per_tok", "exceeds the num_experts (" + std::to_string(e) + ")");
  c.num_experts_per_layer.assign(c.num_hidden_layers, e);  // Qwen3_5MoeDecoderLayer: every layer MoE
  c.router.norm_topk_prob = true;  // Qwen3_5MoeTopKRouter renormalises always
}

}  // namespace

FamilySpec qwen3_next_family() {
  FamilySpec s = family_spec("qwen3_next", "Qwen3NextForCausalLM", "qwen3_next", read_qwen3_next, "num_experts");
  use_qwen_moe_names(s.names);
  s.has_mtp = true;
  return s;
}

FamilySpec qwen3_5_moe_family() {
  FamilySpec s = family_spec("qwen3_5_moe", "Qwen3_5MoeForCausalLM", "qwen3_5_moe_text", read_qwen3_5_moe, "num_experts");
  use_qwen_moe_names(s.names);
  s.has_mtp = true;
  return s;
}

}  // namespace moelab::models
