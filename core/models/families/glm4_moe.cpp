// GLM-4.5 / 4.6 / 4.7 and -Air (transformers `Glm4MoeForCausalLM`, model_type "glm4_moe";
// models/glm4_moe/modeling_glm4_moe.py):
//   - GQA attention (Glm4MoeAttention): q/k/v biases when `attention_bias`, no o bias;
//     q/k RMSNorm per head when `use_qk_norm`; RoPE over the first
//     head_dim * partial_rotary_factor channels of each head (rotate-half pairs), the
//     factor 0.5 when config.json names none (Glm4MoeConfig.__post_init__);
//   - the first `first_k_dense_replace` layers dense (intermediate_size), the others MoE
//     with `n_shared_experts` shared experts (one ungated MLP of moe_intermediate_size *
//     n_shared_experts) beside the routed ones (Glm4MoeMoE.forward);
//   - DeepSeek-V3's router (Glm4MoeTopkRouter): float32 logits, sigmoid scores, the
//     e_score_correction_bias for the choice only, topk_group of n_group groups by the
//     sum of each group's two best biased scores, gates = unbiased scores renormalised
//     (norm_topk_prob) times routed_scaling_factor.
// The checkpoint's multi-token-prediction layer (layer index num_hidden_layers, GLM-4.5's
// `num_nextn_predict_layers`) is not part of the causal LM; transformers skips it too.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  const auto [key, e] = read_glm4_experts(c, f);
  const int64_t first_dense = f.opt_int("first_k_dense_replace").value_or(1);
  if (first_dense < 0 || first_dense > c.num_hidden_layers)
    f.fail("first_k_dense_replace", "must be an integer in [0, num_hidden_layers]");
  c.num_experts_per_layer.assign(c.num_hidden_layers, 0);
  for (int64_t l = first_dense; l < c.num_hidden_layers; ++l) c.num_experts_per_layer[l] = e;
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  if (first_dense > 0 && c.dense_intermediate_size <= 0)
    f.fail("intermediate_size", "must be a positive integer (the first_k_dense_replace layers are dense)");
  c.shared_expert_gate = false;

  c.attn.out_bias = false;  // o_proj has no bias whatever attention_bias says
  c.attn.qk_norm = f.boolean("use_qk_norm", false);
  c.attn.qk_norm_per_head = true;
  if (!hf::names_rope_key(c.raw, "partial_rotary_factor")) c.rope.partial_rotary_factor = 0.5;
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();

  read_glm4_router(c, f, key, e, /*default_scaling=*/1.0);
}

}  // namespace

FamilySpec glm4_moe_family() {
  return deepseek_style_family("glm4_moe", "Glm4MoeForCausalLM", "glm4_moe", read_hparams);
}

}  // namespace moelab::models
