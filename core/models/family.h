// A model family: how to read its hyperparameters and what its tensors are called in
// a Hugging Face checkpoint. One .cpp per family (mixtral.cpp, qwen3_moe.cpp) defines
// a FamilySpec, found by its HF `architectures` / `model_type` strings;
// the loader, the writer and `moelab inspect` work from the spec alone.
//
// Tensor-name templates use {L} for the layer index and {E} for the expert index.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "core/hf/model_config.h"

namespace moelab::models {

struct ExpertWeights;  // core/models/moe_model.h
class TensorTaker;     // core/models/tensor_taker.h

struct TensorNames {
  std::string embed = "model.embed_tokens.weight";
  std::string final_norm = "model.norm.weight";
  std::string lm_head = "lm_head.weight";
  std::string attn_norm = "model.layers.{L}.input_layernorm.weight";
  std::string ffn_norm = "model.layers.{L}.post_attention_layernorm.weight";
  // LayerNorm biases (hf::ModelConfig::layer_norm) and lm_head's bias (lm_head_bias).
  std::string attn_norm_bias = "model.layers.{L}.input_layernorm.bias";
  std::string ffn_norm_bias = "model.layers.{L}.post_attention_layernorm.bias";
  std::string final_norm_bias = "model.norm.bias";
  std::string lm_head_bias = "lm_head.bias";
  std::string q_proj = "model.layers.{L}.self_attn.q_proj.{P}";  // {P}: weight | bias
  std::string k_proj = "model.layers.{L}.self_attn.k_proj.{P}";
  std::string v_proj = "model.layers.{L}.self_attn.v_proj.{P}";
  std::string o_proj = "model.layers.{L}.self_attn.o_proj.{P}";
  std::string q_norm = "model.layers.{L}.self_attn.q_norm.weight";
  std::string k_norm = "model.layers.{L}.self_attn.k_norm.weight";
  // Routed experts as written by save_pretrained (transformers' original format):
  // one [F, D] gate/up and one [D, F] down matrix per expert. The defaults are the names
  // most families use (OLMoE, Qwen, DeepSeek, GLM, ERNIE); a family states only what
  // differs (family_parts.h), and clears them when it has no per-expert tensors (gpt-oss,
  // Llama-4: fused only).
  std::string router = "model.layers.{L}.mlp.gate.weight";                          // [E, D]
  std::string expert_gate = "model.layers.{L}.mlp.experts.{E}.gate_proj.weight";   // [F, D]
  std::string expert_up = "model.layers.{L}.mlp.experts.{E}.up_proj.weight";       // [F, D]
  std::string expert_down = "model.layers.{L}.mlp.experts.{E}.down_proj.weight";   // [D, F]
  // The fused layout of transformers 5 (save_original_format=False); read only.
  std::string router_fused = "model.layers.{L}.mlp.gate.weight";
  std::string experts_gate_up_fused = "model.layers.{L}.mlp.experts.gate_up_proj";  // [E, 2F, D]
  std::string experts_down_fused = "model.layers.{L}.mlp.experts.down_proj";        // [E, D, F]
  // Compressed experts (arXiv 2503.00634), per MoE layer: the official variant's vectors
  // [E, 3, W] under the name the authors' code gives them (OlmoeSparseCompressedMoeBlock.ces),
  // or moelab-v1's theta [E, D] (hf::ModelConfig::compressed_variant).
  std::string experts_ces = "model.layers.{L}.mlp.ces";
  std::string experts_theta = "model.layers.{L}.mlp.experts.theta";
  // MoNE's novices [N, D] (hf::ModelConfig::novices_per_layer): the mean outputs that
  // replace substituted experts, the router's last N rows.
  std::string experts_novices = "model.layers.{L}.mlp.experts.novices";
  // DeepSeek-V3 router e_score_correction_bias [E]; [1, E] on disk when
  // correction_bias_row (ERNIE-4.5's moe_statics), experts along its second axis.
  std::string router_correction_bias = "model.layers.{L}.mlp.gate.e_score_correction_bias";
  bool correction_bias_row = false;
  // Shared experts (families that have them): [S, D], [S, D], [D, S]; the optional
  // sigmoid gate [1, D] (Qwen2-MoE).
  std::string shared_gate, shared_up, shared_down, shared_expert_gate;
  // Multi-head latent attention (DeepSeek); q_proj [H*Q, D] when q_lora_rank is null.
  std::string q_a_proj = "model.layers.{L}.self_attn.q_a_proj.{P}";
  std::string q_a_norm = "model.layers.{L}.self_attn.q_a_layernorm.weight";
  std::string q_b_proj = "model.layers.{L}.self_attn.q_b_proj.weight";
  std::string kv_a_proj = "model.layers.{L}.self_attn.kv_a_proj_with_mqa.{P}";
  std::string kv_a_norm = "model.layers.{L}.self_attn.kv_a_layernorm.weight";
  std::string kv_b_proj = "model.layers.{L}.self_attn.kv_b_proj.weight";
  // Dense MLP layers (families that have them).
  std::string mlp_gate = "model.layers.{L}.mlp.gate_proj.weight";
  std::string mlp_up = "model.layers.{L}.mlp.up_proj.weight";
  std::string mlp_down = "model.layers.{L}.mlp.down_proj.weight";
  // gpt-oss attention sinks [H] (hf::AttentionTraits::sinks).
  std::string sinks = "model.layers.{L}.self_attn.sinks";
  // Gated DeltaNet linear attention (hf::ModelConfig::linear_attn; Qwen3-Next, Qwen3.5-MoE):
  // Qwen3-Next's fused in_proj_qkvz [2*Hk*Dk + 2*Hv*Dv, D] and in_proj_ba [2*Hv, D], or
  // Qwen3.5's in_proj_qkv [2*Hk*Dk + Hv*Dv, D], in_proj_z [Hv*Dv, D], in_proj_b and
  // in_proj_a [Hv, D]; conv1d [2*Hk*Dk + Hv*Dv, 1, W] (depthwise, no bias); dt_bias and
  // A_log [Hv]; the gated RMSNorm's weight [Dv]; out_proj [D, Hv*Dv].
  std::string linear_qkvz = "model.layers.{L}.linear_attn.in_proj_qkvz.weight";
  std::string linear_ba = "model.layers.{L}.linear_attn.in_proj_ba.weight";
  std::string linear_qkv = "model.layers.{L}.linear_attn.in_proj_qkv.weight";
  std::string linear_z = "model.layers.{L}.linear_attn.in_proj_z.weight";
  std::string linear_b = "model.layers.{L}.linear_attn.in_proj_b.weight";
  std::string linear_a = "model.layers.{L}.linear_attn.in_proj_a.weight";
  std::string linear_conv = "model.layers.{L}.linear_attn.conv1d.weight";
  std::string linear_dt_bias = "model.layers.{L}.linear_attn.dt_bias";
  std::string linear_A_log = "model.layers.{L}.linear_attn.A_log";
  std::string linear_norm = "model.layers.{L}.linear_attn.norm.weight";
  std::string linear_out = "model.layers.{L}.linear_attn.out_proj.weight";
};

struct FamilySpec {
  std::string name;                        // "mixtral"
  std::vector<std::string> architectures;  // "MixtralForCausalLM"
  std::vector<std::string> model_types;    // "mixtral"
  TensorNames names;
  // Reads the family's MoE fields (experts per layer, k, norm_topk_prob, q/k norm,
  // dense layers) into `config`; the generic fields are already there.
  void (*read_hparams)(hf::ModelConfig& config) = nullptr;
  // The config.json key that holds the expert count when the file has none of
  // "num_local_experts" / "num_experts" / "n_routed_experts" (transformers 5 accepts
  // several spellings); also the config attribute that the remote code of an unevenly
  // pruned checkpoint sets per layer.
  std::string expert_count_key;
  // Families whose checkpoints hold the router and routed experts in a layout of their
  // own (gpt-oss: fused, transposed, interleaved gate/up, biases, MXFP4): reads layer
  // `layer`'s router and its experts [first, first + count) into `w` (other experts'
  // tensors checked only) / appends the layer's router and expert tensors to `out` as
  // transformers names them. nullptr: the generic per-expert and fused layouts.
  void (*load_experts)(TensorTaker& t, const hf::ModelConfig& config, int64_t layer, int64_t first, int64_t count,
                       ExpertWeights& w) = nullptr;
  void (*save_experts)(const ExpertWeights& w, int64_t layer,
                       std::vector<std::pair<std::string, at::Tensor>>& out) = nullptr;
  // Checkpoints that carry multi-token-prediction weights outside the causal LM (DeepSeek-V3,
  // GLM-4.5: layer num_hidden_layers; ERNIE-4.5: "mtp" tensors), which transformers skips
  // (_keys_to_ignore_on_load_unexpected): the loader skips them too and pruning does not
  // write them (their experts would no longer match the pruned config).
  bool has_mtp = false;
  // Llama-4's fused experts (Llama4TextExperts: x @ W): experts_gate_up_fused [E, D, 2F]
  // (gate columns first, then up) and experts_down_fused [E, F, D], the transposes of
  // transformers 5's [E, 2F, D] / [E, D, F]; read and written in that layout (the
  // family's only one), sliced along the experts like the other fused layouts.
  bool experts_fused_transposed = false;
};

// The fields every family states: its name, the architecture and model_type it reads
// (config.json "architectures"[0], "model_type"), its reader and its expert-count key; the
// rest keep their defaults (the common tensor names) for the family to change.
FamilySpec family_spec(const std::string& name, const std::string& architecture, const std::string& model_type,
                       void (*read_hparams)(hf::ModelConfig&), const std::string& expert_count_key);

// Whether `name` is a multi-token-prediction tensor of a family with has_mtp.
bool is_mtp_tensor(const FamilySpec& family, const std::string& name, int64_t num_hidden_layers);

// The families, one per file; a new family adds its file and one line to the
// table in family.cpp.
FamilySpec mixtral_family();
FamilySpec qwen3_moe_family();
FamilySpec qwen2_moe_family();
FamilySpec olmoe_family();
FamilySpec deepseek_v3_family();
FamilySpec deepseek_v2_family();
FamilySpec gpt_oss_family();
FamilySpec glm4_moe_family();
FamilySpec minimax_m2_family();
FamilySpec glm4_moe_lite_family();
FamilySpec ernie4_5_moe_family();
FamilySpec phimoe_family();
FamilySpec llama4_family();
FamilySpec qwen3_next_family();
FamilySpec qwen3_5_moe_family();
// What DeepSeek-V2 and V3 share (deepseek_v3.cpp): experts, first dense layers, shared
// experts and the multi-head latent attention config.
void read_deepseek_common(hf::ModelConfig& config, bool rope_interleave_default);

// The family of a config (by architectures[0], then model_type). Throws InputError
// naming config.json and listing the supported architectures.
const FamilySpec& family_for(const hf::ModelConfig& config);

const std::vector<FamilySpec>& all_families();

// Replaces {L}, {E} and {P} in a name template.
std::string tensor_name(const std::string& tmpl, int64_t layer, int64_t expert = -1, const std::string& part = "weight");

}  // namespace moelab::models
