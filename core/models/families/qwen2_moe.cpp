// Qwen2-MoE / Qwen1.5-MoE (transformers `Qwen2MoeForCausalLM`, model_type "qwen2_moe";
// models/qwen2_moe/modeling_qwen2_moe.py): GQA with biases on q, k and v only
// (`qkv_bias`), top-k routing that renormalises only when `norm_topk_prob`, and in each
// MoE layer one shared expert (`shared_expert_intermediate_size`) whose output is scaled
// per token by sigmoid(shared_expert_gate . x) and added to the routed output
// (Qwen2MoeSparseMoeBlock.forward). Dense MLP layers where `mlp_only_layers` or
// `decoder_sparse_step` say so (Qwen2MoeDecoderLayer); sliding window on the layers
// that `layer_types` marks, when `use_sliding_window`.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"
#include "core/models/sparse_layer_map.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("num_experts") ? "num_experts" : "num_local_experts";
  c.num_experts_per_layer = qwen_moe_layer_experts(f, c, f.positive_int(key));
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  c.shared_expert_intermediate_size = f.positive_int("shared_expert_intermediate_size");
  c.shared_expert_gate = true;
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", false);
  c.attn.qk_norm = false;
  c.attn.bias = f.boolean("qkv_bias", true);
  c.attn.out_bias = false;
  // Qwen2MoeConfig: sliding_window = sliding_window if use_sliding_window else 0; the
  // window then applies to the layers that layer_types marks "sliding_attention" (its
  // default: odd-numbered layers below max_window_layers).
  if (!f.boolean("use_sliding_window", false)) {
    c.attn.sliding_window.reset();
  } else if (c.attn.sliding_layers.empty()) {
    const int64_t max_window_layers = f.opt_int("max_window_layers").value_or(28);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) c.attn.sliding_layers.push_back((l + 1) % 2 == 1 && l < max_window_layers);
  }
}

}  // namespace

FamilySpec qwen2_moe_family() {
  FamilySpec s = family_spec("qwen2_moe", "Qwen2MoeForCausalLM", "qwen2_moe", read_hparams, "num_experts");
  use_qwen_moe_names(s.names);
  return s;
}

}  // namespace moelab::models
