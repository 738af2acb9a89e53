// config.json (and its companion files) of a model directory moelab writes: the
// input's config with the expert counts, top-k and grouped routing of the pruned /
// merged model. Shared by save_model (a model in memory) and prune_checkpoint (tensor
// surgery on the files), so that both describe their output the same way.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/hf/model_config.h"
#include "core/models/family.h"

namespace moelab::models {

struct SavedConfigOptions {
  // "bfloat16" | "float16" | "float32": the weights' dtype written into "dtype" (or
  // "torch_dtype", the spelling the file had); nullopt keeps the input's value.
  std::optional<std::string> dtype;
  // True when the weights are written dequantised: quantization_config no longer applies.
  bool dequantised = true;
};

// Writes config.json into `dir` (a directory being built: AtomicDir). `config` holds the
// written model's hyperparameters (num_experts_per_layer, num_experts_per_tok, n_group,
// topk_group, compressed_main) and, in config.raw, the input's config.json. When MoE
// layers keep different expert counts, also modeling_moelab.py and an auto_map (a
// warning says trust_remote_code=True is needed). Copies the tokenizer and generation
// files from the input directory (config.path's folder).
void write_saved_config(const std::filesystem::path& dir, const hf::ModelConfig& config, const FamilySpec& family,
                        const SavedConfigOptions& opts, const std::string& out_name);

// "bfloat16" | "float16" | "float32" for a dtype (others: "float32").
std::string dtype_config_name(at::ScalarType t);

}  // namespace moelab::models
