// DeepSeek-V2 / V2-Lite (transformers `DeepseekV2ForCausalLM`, model_type
// "deepseek_v2"; models/deepseek_v2/modeling_deepseek_v2.py): the multi-head latent
// attention, shared experts and first dense layers of deepseek_v3.cpp (V2-Lite:
// q_lora_rank null, a full q_proj), RoPE always on interleaved pairs (apply_rotary_emb
// rotates complex pairs), and V2's router (DeepseekV2TopkRouter): float32 logits,
// softmax, top-k ("greedy") or top-k within the topk_group groups of n_group with the
// highest max score ("group_limited_greedy"), gates times routed_scaling_factor and
// never renormalised (the router ignores norm_topk_prob).
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  read_deepseek_common(c, /*rope_interleave_default=*/true);
  hf::JsonFields f(c.raw, c.path);
  c.mla->rope_interleave = true;  // V2 has no rope_interleave switch
  c.router.scoring = hf::RouterScoring::kSoftmax;
  c.router.correction_bias = false;
  const std::string topk = f.string("topk_method", "greedy");
  const auto method = hf::parse_topk_method(topk);
  if (!method || (*method != hf::TopKMethod::kGreedy && *method != hf::TopKMethod::kGroupLimitedGreedy))
    f.fail("topk_method", "\"" + topk + "\" is not supported (supported: greedy, group_limited_greedy)");
  c.router.topk_method = *method;
  c.router.n_group = f.opt_int("n_group").value_or(1);
  c.router.topk_group = f.opt_int("topk_group").value_or(1);
  c.router.norm_topk_prob = false;
  if (f.boolean("mlp_bias", false)) f.fail("mlp_bias", "true is not supported (MLPs with biases)");
}

}  // namespace

FamilySpec deepseek_v2_family() {
  FamilySpec s = family_spec("deepseek_v2", "DeepseekV2ForCausalLM", "deepseek_v2", read_hparams, "n_routed_experts");
  use_mlp_experts_names(s.names);
  return s;
}

}  // namespace moelab::models
