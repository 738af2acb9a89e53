// GLM-4.7-Flash (transformers `Glm4MoeLiteForCausalLM`, model_type "glm4_moe_lite";
// models/glm4_moe_lite/modular_glm4_moe_lite.py): GLM-4.5's MoE with DeepSeek-V3's
// multi-head latent attention.
//   - attention: DeepseekV3Attention (hf::MlaConfig; rope_interleave default true), over
//     every channel of qk_rope_head_dim (a partial_rotary_factor other than 1 is refused:
//     transformers' MLA would not run with it);
//   - layers by `mlp_layer_types` ("dense" | "sparse"; default the first dense, the others
//     sparse, as Glm4MoeLiteConfig.__post_init__), dense ones of intermediate_size;
//     `n_shared_experts` (default 1) shared experts beside the routed ones;
//   - the router of GLM-4.5 (Glm4MoeTopkRouter, DeepSeek-V3's): float32 logits, sigmoid,
//     correction bias for the choice only, noaux_tc groups, gates renormalised
//     (norm_topk_prob) and scaled by routed_scaling_factor (default 1.8);
//   - the multi-token-prediction layer (index num_hidden_layers) is skipped, as transformers does.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  read_deepseek_common(c, /*rope_interleave_default=*/true);
  hf::JsonFields f(c.raw, c.path);
  const auto [key, e] = read_glm4_experts(c, f);
  const int64_t L = c.num_hidden_layers;
  c.num_experts_per_layer.assign(L, e);
  if (f.has("mlp_layer_types")) {
    const auto& v = c.raw["mlp_layer_types"];
    if (!v.is_array() || int64_t(v.size()) != L)
      f.fail("mlp_layer_types", "must list \"dense\" or \"sparse\" for each of the " + std::to_string(L) + " layers");
    for (int64_t l = 0; l < L; ++l) {
      if (!v[l].is_string() || (v[l] != "dense" && v[l] != "sparse"))
        f.fail("mlp_layer_types", "entries must be \"dense\" or \"sparse\"");
      if (v[l] == "dense") c.num_experts_per_layer[l] = 0;
    }
  } else {
    c.num_experts_per_layer[0] = 0;
  }
  for (int64_t l = 0; l < L; ++l)
    if (!c.is_moe_layer(l) && c.dense_intermediate_size <= 0)
      f.fail("intermediate_size", "must be a positive integer (layer " + std::to_string(l) + " is dense)");
  if (c.rope.partial_rotary_factor != 1.0)
    f.fail("partial_rotary_factor", "must be 1 (the latent attention rotates all qk_rope_head_dim channels)");

  read_glm4_router(c, f, key, e, /*default_scaling=*/1.8);
}

}  // namespace

FamilySpec glm4_moe_lite_family() {
  return deepseek_style_family("glm4_moe_lite", "Glm4MoeLiteForCausalLM", "glm4_moe_lite", read_hparams);
}

}  // namespace moelab::models
