// MiniMax-M2 (transformers `MiniMaxM2ForCausalLM`, model_type "minimax_m2";
// models/minimax_m2/modeling_minimax_m2.py):
//   - GQA attention without biases; q and k each through one RMSNorm over all heads'
//     channels together (q_norm [H*A], k_norm [G*A], after the projections, before the
//     heads are split: MiniMaxM2Attention.forward), always on; RoPE over the first
//     `rotary_dim` channels of each head (the Hub config's key; transformers 5 also
//     writes it as rope_parameters.partial_rotary_factor = rotary_dim / head_dim);
//   - every layer a sparse MoE (block_sparse_moe, Mixtral's w1/w2/w3 expert names), no
//     shared experts; the router (MiniMaxM2TopKRouter): logits in the compute dtype,
//     sigmoid scores in float32, e_score_correction_bias (a buffer of the MoE block, not of
//     the gate) added for the choice only, plain top-k, gates = unbiased scores always
//     renormalised over the k, no scaling factor.
// Of the Hub config.json's own keys, scoring_func and use_routing_bias must say what
// transformers implements (sigmoid, true): other values are refused; use_qk_norm,
// qk_norm_type and the MTP settings are ignored, as transformers ignores them.
#include "core/hf/json_fields.h"
#include "core/models/families/family_parts.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const std::string key = f.has("num_local_experts") ? "num_local_experts" : "num_experts";
  const int64_t e = f.positive_int(key);
  c.num_experts_per_layer.assign(c.num_hidden_layers, e);
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  if (c.num_experts_per_tok > e) f.fail("num_experts_per_tok", "exceeds the " + key + " (" + std::to_string(e) + ")");
  c.moe_intermediate_size = f.positive_int("intermediate_size");
  c.router.norm_topk_prob = true;
  c.attn.qk_norm = true;
  c.attn.qk_norm_per_head = false;
  c.attn.bias = false;
  c.attn.out_bias = false;
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();
  // MiniMaxM2Config.default_theta when config.json names no rope_theta.
  if (!hf::names_rope_key(c.raw, "rope_theta")) c.rope.theta = 5000000.0;
  if (!hf::names_rope_key(c.raw, "partial_rotary_factor")) {
    if (auto rotary_dim = f.opt_int("rotary_dim")) {
      if (*rotary_dim <= 0 || *rotary_dim > c.head_dim || *rotary_dim % 2 != 0)
        f.fail("rotary_dim", "must be an even integer in (0, head_dim = " + std::to_string(c.head_dim) + "]");
      c.rope.partial_rotary_factor = double(*rotary_dim) / double(c.head_dim);
    }
  }

  // The remote code's router options that transformers does not implement: refused, not
  // run as a different router.
  if (f.string("scoring_func", "sigmoid") != "sigmoid")
    f.fail("scoring_func", "\"" + f.string("scoring_func", "") + "\" is not supported (MiniMax-M2 routes with sigmoid scores)");
  if (!f.boolean("use_routing_bias", true))
    f.fail("use_routing_bias", "false is not supported (MiniMax-M2's router adds e_score_correction_bias)");
  c.router.scoring = hf::RouterScoring::kSigmoid;
  c.router.correction_bias = true;
  c.router.fp32 = false;
  c.router.topk_method = hf::TopKMethod::kGreedy;
  c.router.n_group = c.router.topk_group = 1;
  c.router.scaling_factor = 1.0;
}

}  // namespace

FamilySpec minimax_m2_family() {
  FamilySpec s = family_spec("minimax_m2", "MiniMaxM2ForCausalLM", "minimax_m2", read_hparams, "num_local_experts");
  use_block_sparse_moe_names(s.names);
  s.names.router_correction_bias = "model.layers.{L}.block_sparse_moe.e_score_correction_bias";
  return s;
}

}  // namespace moelab::models
