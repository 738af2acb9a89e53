#include "core/models/families/family_parts.h"

namespace moelab::models {

void use_mlp_experts_names(TensorNames& n) {
  n.shared_gate = "model.layers.{L}.mlp.shared_experts.gate_proj.weight";
  n.shared_up = "model.layers.{L}.mlp.shared_experts.up_proj.weight";
  n.shared_down = "model.layers.{L}.mlp.shared_experts.down_proj.weight";
}

void use_qwen_moe_names(TensorNames& n) {
  n.shared_gate = "model.layers.{L}.mlp.shared_expert.gate_proj.weight";
  n.shared_up = "model.layers.{L}.mlp.shared_expert.up_proj.weight";
  n.shared_down = "model.layers.{L}.mlp.shared_expert.down_proj.weight";
  n.shared_expert_gate = "model.layers.{L}.mlp.shared_expert_gate.weight";
}

void use_block_sparse_moe_names(TensorNames& n) {
  n.router = "model.layers.{L}.block_sparse_moe.gate.weight";
  n.expert_gate = "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight";
  n.expert_up = "model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight";
  n.expert_down = "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight";
}

void read_glm4_router(hf::ModelConfig& c, const hf::JsonFields& f, const std::string& key, int64_t e,
                      double default_scaling) {
  if (f.has("topk_method") && f.string("topk_method", "") != "noaux_tc")
    f.fail("topk_method", "\"" + f.string("topk_method", "") + "\" is not supported (GLM-4.x routes with noaux_tc)");
  c.router.scoring = hf::RouterScoring::kSigmoid;
  c.router.correction_bias = true;
  c.router.fp32 = true;
  c.router.topk_method = hf::TopKMethod::kNoauxTc;
  c.router.n_group = f.opt_int("n_group").value_or(1);
  c.router.topk_group = f.opt_int("topk_group").value_or(1);
  if (c.router.n_group < 1 || e % c.router.n_group != 0) f.fail("n_group", "must divide the " + key + " (" + std::to_string(e) + ")");
  if (c.router.topk_group < 1 || c.router.topk_group > c.router.n_group) f.fail("topk_group", "must be in [1, n_group]");
  c.router.norm_topk_prob = f.boolean("norm_topk_prob", true);
  c.router.scaling_factor = f.number("routed_scaling_factor", default_scaling);
}

FamilySpec deepseek_style_family(const std::string& name, const std::string& architecture,
                                 const std::string& model_type, void (*read_hparams)(hf::ModelConfig&)) {
  FamilySpec s = family_spec(name, architecture, model_type, read_hparams, "n_routed_experts");
  use_mlp_experts_names(s.names);
  s.has_mtp = true;
  return s;
}

std::string routed_expert_count_key(const hf::JsonFields& f) {
  return f.has("n_routed_experts") ? "n_routed_experts" : f.has("num_local_experts") ? "num_local_experts" : "num_experts";
}

std::pair<std::string, int64_t> read_glm4_experts(hf::ModelConfig& c, const hf::JsonFields& f) {
  const std::string key = routed_expert_count_key(f);
  const int64_t e = f.positive_int(key);
  if (c.num_experts_per_tok > e) f.fail("num_experts_per_tok", "exceeds the " + key + " (" + std::to_string(e) + ")");
  const int64_t n_shared = f.opt_int("n_shared_experts").value_or(1);
  if (n_shared < 0) f.fail("n_shared_experts", "must be a non-negative integer");
  c.shared_expert_intermediate_size = c.moe_intermediate_size * n_shared;
  return {key, e};
}

}  // namespace moelab::models
