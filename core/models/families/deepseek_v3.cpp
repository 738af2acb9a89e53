// DeepSeek-V3 (transformers `DeepseekV3ForCausalLM`, model_type "deepseek_v3";
// models/deepseek_v3/modeling_deepseek_v3.py) and the parts DeepSeek-V2 shares
// (deepseek_v2.cpp):
//   - multi-head latent attention (DeepseekV3Attention; hf::MlaConfig), rotary
//     embedding over qk_rope_head_dim channels, interleaved pairs when rope_interleave,
//     softmax scale qk_head_dim^-0.5 times mscale(factor, mscale_all_dim)^2 under a
//     scaled RoPE with mscale_all_dim (yarn_apply_mscale);
//   - the first `first_k_dense_replace` layers dense (intermediate_size), the others MoE
//     with `n_shared_experts` shared experts: one MLP of moe_intermediate_size *
//     n_shared_experts, added ungated (DeepseekV3MoE.forward);
//   - V3's router (DeepseekV3TopkRouter): logits in float32, sigmoid scores, the
//     e_score_correction_bias added for the choice only, the topk_group best of n_group
//     groups by the sum of each group's two best biased scores, top-k within them, gates
//     = unbiased scores renormalised (norm_topk_prob) and times routed_scaling_factor.
#include <cmath>

#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {

void read_deepseek_common(hf::ModelConfig& c, bool rope_interleave_default) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = routed_expert_count_key(f);
  const int64_t e = f.positive_int(key);
  const int64_t first_dense = f.opt_int("first_k_dense_replace").value_or(0);
  if (first_dense < 0) f.fail("first_k_dense_replace", "must be a non-negative integer");
  c.num_experts_per_layer.assign(c.num_hidden_layers, 0);
  for (int64_t l = first_dense; l < c.num_hidden_layers; ++l) c.num_experts_per_layer[l] = e;
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  const int64_t n_shared = f.opt_int("n_shared_experts").value_or(0);
  if (n_shared < 0) f.fail("n_shared_experts", "must be a non-negative integer");
  c.shared_expert_intermediate_size = c.moe_intermediate_size * n_shared;
  c.shared_expert_gate = false;
  c.attn.qk_norm = false;
  c.router.fp32 = true;
  c.router.scaling_factor = f.number("routed_scaling_factor", 1.0);
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();

  hf::MlaConfig a;
  if (auto r = f.opt_int("q_lora_rank")) {
    if (*r <= 0) f.fail("q_lora_rank", "must be a positive integer or null");
    a.q_lora_rank = *r;
  }
  a.kv_lora_rank = f.positive_int("kv_lora_rank");
  a.qk_nope_head_dim = f.positive_int("qk_nope_head_dim");
  a.qk_rope_head_dim = f.positive_int("qk_rope_head_dim");
  a.v_head_dim = f.positive_int("v_head_dim");
  if (a.qk_rope_head_dim % 2 != 0) f.fail("qk_rope_head_dim", "must be even");
  a.rope_interleave = f.boolean("rope_interleave", rope_interleave_default);
  a.softmax_scale = 1.0 / std::sqrt(double(a.qk_head_dim()));
  // yarn_apply_mscale: only for a scaled RoPE whose parameters name mscale_all_dim.
  const auto& r = c.rope;
  if (r.type != "default" && r.mscale_all_dim && *r.mscale_all_dim != 0 && r.factor > 1) {
    const double m = 0.1 * *r.mscale_all_dim * std::log(r.factor) + 1.0;
    a.softmax_scale *= m * m;
  }
  // The rotary embedding covers the qk_rope_head_dim channels (DeepseekV3Config sets
  // head_dim = qk_rope_head_dim).
  c.head_dim = a.qk_rope_head_dim;
  c.num_key_value_heads = c.num_attention_heads;
  c.mla = a;
}

namespace {

void read_hparams(hf::ModelConfig& c) {
  read_deepseek_common(c, /*rope_interleave_default=*/true);
  hf::JsonFields f(c.raw, c.path);
  c.router.scoring = hf::RouterScoring::kSigmoid;  // transformers' V3 router ignores config "scoring_func"
  c.router.correction_bias = true;
  c.router.topk_method = hf::TopKMethod::kNoauxTc;
  c.router.n_group = f.opt_int("n_group").value_or(1);
  c.router.topk_group = f.opt_int("topk_group").value_or(1);
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", true);
}

}  // namespace

FamilySpec deepseek_v3_family() {
  return deepseek_style_family("deepseek_v3", "DeepseekV3ForCausalLM", "deepseek_v3", read_hparams);
}

}  // namespace moelab::models
