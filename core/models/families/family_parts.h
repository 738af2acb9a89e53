// Pieces that several family files share (models/<family>.cpp only; not part of the
// family interface of family.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

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

// A DeepSeek-V3-style family (DeepSeek-V3, GLM-4.5, GLM-4.7-Flash): use_mlp_experts_names,
// the routed expert count under n_routed_experts, and a multi-token-prediction layer after
// the last decoder layer (skipped, as transformers does).
FamilySpec deepseek_style_family(const std::string& name, const std::string& architecture,
                                 const std::string& model_type, void (*read_hparams)(hf::ModelConfig&));

// The key DeepSeek-style configs give the routed expert count under: n_routed_experts, else
// num_local_experts, else num_experts (whether present or not: the error then names it).
std::string routed_expert_count_key(const hf::JsonFields& fields);

// GLM-4.x's expert counts (GLM-4.5 and GLM-4.7-Flash): the routed experts per MoE layer
// under n_routed_experts (or num_local_experts, num_experts), checked against
// num_experts_per_tok, and n_shared_experts (default 1) shared experts as one MLP of
// moe_intermediate_size * n_shared_experts; both sizes already read into `config`. Returns
// the key the count was read under and the count.
std::pair<std::string, int64_t> read_glm4_experts(hf::ModelConfig& config, const hf::JsonFields& fields);

}  // namespace moelab::models
