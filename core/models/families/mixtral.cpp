// Mixtral (transformers `MixtralForCausalLM`, model_type "mixtral"): GQA attention
// without biases, optional sliding window, every layer a sparse MoE whose router
// always renormalises the top-k probabilities (softmax over all experts, then
// divide by the top-k sum; transformers models/mixtral/modeling_mixtral.py).
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  // transformers 5 maps num_experts -> num_local_experts (attribute_map).
  const std::string key = f.has("num_local_experts") ? "num_local_experts" : "num_experts";
  int64_t e = f.positive_int(key);
  c.num_experts_per_layer.assign(c.num_hidden_layers, e);
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("intermediate_size");
  c.router.norm_topk_prob = true;
  c.attn.qk_norm = false;
  c.attn.bias = false;
  c.attn.out_bias = false;
  c.attn.sliding_layers.clear();  // Mixtral's window applies to every layer
}

}  // namespace

FamilySpec mixtral_family() {
  FamilySpec s = family_spec("mixtral", "MixtralForCausalLM", "mixtral", read_hparams, "num_local_experts");
  use_block_sparse_moe_names(s.names);
  return s;
}

}  // namespace moelab::models
