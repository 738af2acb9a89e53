// The hyperparameters of a Hugging Face MoE checkpoint (config.json), read into one
// plain struct shared by every model family.
//
// Accepts both RoPE spellings: transformers 4.x (`rope_theta`, `rope_scaling`) and
// 5.x (`rope_parameters: {rope_theta, rope_type, ...}`).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moelab::hf {

struct RopeConfig {
  std::string type = "default";  // default | linear | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  // yarn
  std::optional<double> attention_factor, mscale, mscale_all_dim;
  double beta_fast = 32.0, beta_slow = 1.0;
  bool truncate = true;
  double partial_rotary_factor = 1.0;
};

struct ModelConfig {
  std::string path;          // the config.json this came from (for error messages)
  std::string architecture;  // e.g. "MixtralForCausalLM"
  std::string model_type;    // e.g. "mixtral"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // D
  int64_t num_hidden_layers = 0;   // L
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t moe_intermediate_size = 0;    // F of one expert
  int64_t dense_intermediate_size = 0;  // F of a dense MLP layer (Qwen3 mlp_only_layers)
  // Routed experts per layer (L entries; 0 = dense layer). Uniform in stock
  // configs; moelab-pruned checkpoints may carry `moelab_num_experts_per_layer`.
  std::vector<int64_t> num_experts_per_layer;
  int64_t num_experts_per_tok = 0;  // k
  bool norm_topk_prob = true;
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  int64_t max_position_embeddings = 0;
  std::optional<int64_t> sliding_window;
  bool attention_bias = false;
  bool qk_norm = false;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";
  // NAEE dynamic skipping (Lu et al. 2024; moelab set-skipping): per decoder layer, beta
  // in [0, 1] from `moelab_skip_beta` (0 = no skipping; empty = the key is absent). A
  // token's routed expert other than its top-1 is not run when its gate < beta * the
  // top-1 gate. `moelab_skip_renormalize` (default true, as NAEE's code): the kept gates
  // are then renormalised as the family's router renormalises top-k (Mixtral always,
  // Qwen3 when norm_topk_prob); false: they keep their unskipped values. transformers
  // ignores both keys (it runs such a checkpoint without skipping).
  std::vector<double> skip_beta;
  bool skip_renormalize = true;
  double skip_beta_of(int64_t layer) const { return skip_beta.empty() ? 0.0 : skip_beta.at(layer); }
  // Compressed experts (arXiv 2503.00634; moelab compress): `moelab_compressed_experts:
  // {"main": k_m}`. Of a token's k routed experts the k_m with the highest gates run
  // (on h * theta, theta from the other k - k_m, models/moe_block.cpp); 0 = off.
  // 1 <= k_m < k is checked once k is known (models::load_config).
  int64_t compressed_main = 0;
  bool compressed() const { return compressed_main > 0; }
  nlohmann::json raw;  // the whole config.json, kept so that saving preserves unknown keys

  int64_t num_routed_experts_max() const;
  bool is_moe_layer(int64_t layer) const { return num_experts_per_layer.at(layer) > 0; }
  // MoE layers only: decoder-layer index -> routed experts.
  std::map<int64_t, int64_t> moe_layer_experts() const;
};

// Reads and validates config.json. Throws InputError naming the file and the field.
ModelConfig read_model_config(const std::string& config_json_path);

}  // namespace moelab::hf
