// Pieces that several family files share (models/<family>.cpp only; not part of the
// family interface of family.h).
#pragma once

#include <string>

#include "core/hf/json_fields.h"
#include "core/models/family.h"

namespace moelab::models {

// DeepSeek-style shared experts `mlp.shared_experts.{gate,up,down}_proj` beside the default
// routed names (DeepSeek-V2/V3, GLM-4.x, ERNIE-4.5).
void use_mlp_experts_names(TensorNames& names);

// Qwen-MoE's one shared expert `mlp.shared_expert.{gate,up,down}_proj` and its gate
// `mlp.shared_expert_gate` beside the default routed names (Qwen2-MoE, Qwen3-Next, Qwen3.5-MoE).
void use_qwen_moe_names(TensorNames& names);

// Mixtral's names: router `block_sparse_moe.gate`, routed experts
// `block_sparse_moe.experts.{E}.w1` (gate) / `w3` (up) / `w2` (down) (Mixtral, MiniMax-M2, Phi-3.5-MoE).
void use_block_sparse_moe_names(TensorNames& names);

// GLM-4.5's router (Glm4MoeTopkRouter, DeepSeek-V3's; GLM-4.5 and GLM-4.7-Flash): float32
// logits, sigmoid scores, the correction bias for the choice only, noaux_tc over n_group
// groups (checked to divide `experts`, the value of config key `expert_key`), gates
// renormalised (norm_topk_prob) and scaled by routed_scaling_factor (`default_scaling` when
// unset). A topk_method other than noaux_tc is refused naming the field.
void read_glm4_router(hf::ModelConfig& config, const hf::JsonFields& fields, const std::string& expert_key,
                      int64_t experts, double default_scaling);

}  // namespace moelab::models
