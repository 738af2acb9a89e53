// ERNIE-4.5 MoE (transformers `Ernie4_5_MoeForCausalLM`, model_type "ernie4_5_moe";
// models/ernie4_5_moe/modeling_ernie4_5_moe.py):
//   - GQA attention without biases (`use_bias` false on every ERNIE-4.5 MoE checkpoint;
//     true is refused), RoPE on interleaved pairs (hf::AttentionTraits::rope_interleaved),
//     theta 500000 when config.json names none;
//   - MoE layers where (l + 1) % moe_layer_interval == 0 and moe_layer_start_index <= l <=
//     moe_layer_end_index (-1: the last layer), dense ones (intermediate_size) elsewhere;
//     `moe_num_shared_experts` shared experts as one ungated MLP of moe_intermediate_size *
//     moe_num_shared_experts;
//   - the router (Ernie4_5_MoeTopKRouter): float32 logits, softmax, the choice by softmax +
//     e_score_correction_bias (mlp.moe_statics, [1, E] on disk), the unbiased probabilities
//     of the chosen k renormalised over max(sum, moe_norm_min);
//   - embeddings tied unless config.json says otherwise (Ernie4_5_MoeConfig's default).
// Hub configs use ERNIE's own keys (moe_num_experts, moe_k); transformers maps num_experts
// and num_experts_per_tok onto them, and either spelling is read.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("moe_num_experts") ? "moe_num_experts" : "num_experts";
  const int64_t e = f.positive_int(key);
  const std::string k_key = f.has("moe_k") ? "moe_k" : "num_experts_per_tok";
  c.num_experts_per_tok = f.positive_int(k_key);
  if (c.num_experts_per_tok > e) f.fail(k_key, "exceeds the " + key + " (" + std::to_string(e) + ")");
  const int64_t L = c.num_hidden_layers;
  const int64_t start = f.opt_int("moe_layer_start_index").value_or(1);
  int64_t end = f.opt_int("moe_layer_end_index").value_or(-1);
  if (end == -1) end = L - 1;
  const int64_t interval = f.opt_int("moe_layer_interval").value_or(1);
  if (interval < 1) f.fail("moe_layer_interval", "must be a positive integer");
  if (start < 0 || start >= L) f.fail("moe_layer_start_index", "must be a layer index in [0, num_hidden_layers)");
  if (end < start || end >= L) f.fail("moe_layer_end_index", "must be -1 or a layer index in [start, num_hidden_layers)");
  c.num_experts_per_layer.assign(L, 0);
  for (int64_t l = start; l <= end; ++l)
    if ((l + 1) % interval == 0) c.num_experts_per_layer[l] = e;
  c.moe_intermediate_size = f.positive_int("moe_intermediate_size");
  c.dense_intermediate_size = f.opt_int("intermediate_size").value_or(0);
  for (int64_t l = 0; l < L; ++l)
    if (!c.is_moe_layer(l) && c.dense_intermediate_size <= 0)
      f.fail("intermediate_size", "must be a positive integer (layer " + std::to_string(l) + " is dense)");
  const int64_t n_shared = f.opt_int("moe_num_shared_experts").value_or(0);
  if (n_shared < 0) f.fail("moe_num_shared_experts", "must be a non-negative integer");
  c.shared_expert_intermediate_size = c.moe_intermediate_size * n_shared;
  c.shared_expert_gate = false;

  if (f.boolean("use_bias", false))
    f.fail("use_bias", "true is not supported (no ERNIE-4.5 MoE checkpoint has biases on its projections)");
  c.attn.bias = c.attn.out_bias = false;
  c.attn.qk_norm = false;
  c.attn.rope_interleaved = true;
  c.rms_norm_eps = f.number("rms_norm_eps", 1e-5);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
  if (!hf::names_rope_key(c.raw, "rope_theta")) c.rope.theta = 500000.0;
  if (c.rope.partial_rotary_factor != 1.0)
    f.fail("partial_rotary_factor", "must be 1 (ERNIE-4.5 rotates every channel of a head)");
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();

  c.router.scoring = hf::RouterScoring::kSoftmax;
  c.router.correction_bias = true;
  c.router.fp32 = true;
  c.router.topk_method = hf::TopKMethod::kGreedy;
  c.router.n_group = c.router.topk_group = 1;
  c.router.norm_topk_prob = true;
  c.router.norm_topk_min = f.number("moe_norm_min", 1e-12);
  if (!(c.router.norm_topk_min >= 0)) f.fail("moe_norm_min", "must be a non-negative number");
  c.router.scaling_factor = 1.0;
}

}  // namespace

FamilySpec ernie4_5_moe_family() {
  FamilySpec s = family_spec("ernie4_5_moe", "Ernie4_5_MoeForCausalLM", "ernie4_5_moe", read_hparams, "moe_num_experts");
  use_mlp_experts_names(s.names);
  s.names.router_correction_bias = "model.layers.{L}.mlp.moe_statics.e_score_correction_bias";
  s.names.correction_bias_row = true;
  s.has_mtp = true;
  return s;
}

}  // namespace moelab::models
