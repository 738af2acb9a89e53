// Qwen3-MoE (transformers `Qwen3MoeForCausalLM`, model_type "qwen3_moe"): GQA with
// RMSNorm on each head's q and k (q_norm/k_norm over head_dim), optional attention
// biases, top-k routing that renormalises only when `norm_topk_prob` is true, and
// dense MLP layers where `mlp_only_layers` or `decoder_sparse_step` say so
// (transformers models/qwen3_moe/modeling_qwen3_moe.py, Qwen3MoeDecoderLayer).
#include "core/hf/json_fields.h"
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
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", false);
  c.attn.qk_norm = true;
  // Qwen3-MoE only uses the window when use_sliding_window is set, then on every layer.
  if (!f.boolean("use_sliding_window", false)) c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();
}

}  // namespace

FamilySpec qwen3_moe_family() {
  return family_spec("qwen3_moe", "Qwen3MoeForCausalLM", "qwen3_moe", read_hparams, "num_experts");
}

}  // namespace moelab::models
