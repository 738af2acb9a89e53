// Qwen3-MoE (transformers `Qwen3MoeForCausalLM`, model_type "qwen3_moe"): GQA with
// RMSNorm on each head's q and k (q_norm/k_norm over head_dim), optional attention
// biases, top-k routing that renormalises only when `norm_topk_prob` is true, and
// dense MLP layers where `mlp_only_layers` or `decoder_sparse_step` say so
// (transformers models/qwen3_moe/modeling_qwen3_moe.py, Qwen3MoeDecoderLayer).
#include <algorithm>

#include "hf/json_fields.h"
#include "models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("num_experts") ? "num_experts" : "num_local_experts";
  int64_t e = f.positive_int(key);
  int64_t step = f.opt_int("decoder_sparse_step").value_or(1);
  if (step <= 0) f.fail("decoder_sparse_step", "must be a positive integer");
  std::vector<int64_t> mlp_only;
  if (f.has("mlp_only_layers")) {
    if (!c.raw["mlp_only_layers"].is_array()) f.fail("mlp_only_layers", "must be a list of layer indices");
    for (const auto& v : c.raw["mlp_only_layers"]) {
      if (!v.is_number_integer()) f.fail("mlp_only_layers", "must be a list of layer indices");
      mlp_only.push_back(v.get<int64_t>());
    }
  }
  c.num_experts_per_layer.assign(c.num_hidden_layers, 0);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    bool dense = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end() || (l + 1) % step != 0;
    c.num_experts_per_layer[l] = dense ? 0 : e;
  }
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  c.norm_topk_prob = f.boolean("norm_topk_prob", false);
  c.qk_norm = true;
  // Qwen3-MoE only uses the window when use_sliding_window is set, then on every layer.
  if (!f.boolean("use_sliding_window", false)) c.sliding_window.reset();
  c.sliding_layers.clear();
}

}  // namespace

FamilySpec qwen3_moe_family() {
  FamilySpec s;
  s.name = "qwen3_moe";
  s.architectures = {"Qwen3MoeForCausalLM"};
  s.model_types = {"qwen3_moe"};
  s.names.router = "model.layers.{L}.mlp.gate.weight";
  s.names.expert_gate = "model.layers.{L}.mlp.experts.{E}.gate_proj.weight";
  s.names.expert_up = "model.layers.{L}.mlp.experts.{E}.up_proj.weight";
  s.names.expert_down = "model.layers.{L}.mlp.experts.{E}.down_proj.weight";
  s.read_hparams = read_hparams;
  s.expert_count_key = "num_experts";
  return s;
}

}  // namespace moelab::models
