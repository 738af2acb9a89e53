// Which decoder layers are MoE layers in the Qwen-MoE configs (Qwen2-MoE, Qwen3-MoE:
// Qwen*MoeDecoderLayer): a layer is dense when it is listed in `mlp_only_layers` or when
// (layer + 1) % `decoder_sparse_step` != 0; every other layer has `experts` routed experts.
#pragma once

#include <cstdint>
#include <vector>

#include "core/hf/json_fields.h"
#include "core/hf/model_config.h"

namespace moelab::models {

// Per decoder layer: `experts`, or 0 for a dense layer. InputError naming the field for a
// malformed `decoder_sparse_step` or `mlp_only_layers`.
std::vector<int64_t> qwen_moe_layer_experts(const hf::JsonFields& f, const hf::ModelConfig& c, int64_t experts);

}  // namespace moelab::models
