// Llama-4 text (transformers `Llama4ForCausalLM`, model_type "llama4_text";
// models/llama4/modeling_llama4.py, configuration_llama4.py):
//   - GQA attention (Llama4TextAttention), q/k/v/o biases when `attention_bias`; RoPE as a
//     complex multiplication of interleaved pairs (apply_rotary_emb, float32) on the layers
//     `no_rope_layers` marks 1, the others NoPE layers (default: every
//     `no_rope_layer_interval`-th layer NoPE); on RoPE layers q and k of each head through
//     an L2 norm without weight after RoPE (`use_qk_norm`, Llama4TextL2Norm) and chunked
//     causal attention (`attention_chunk_size`, the layers `layer_types` marks
//     "chunked_attention"); on NoPE layers the queries' temperature tuning
//     (`attn_temperature_tuning`, `floor_scale`, `attn_scale`); theta 500000 and llama3
//     scaling as the Hub configs have it (Llama4TextConfig.default_theta);
//   - MoE layers where `moe_layers` says (default: every `interleave_moe_layer_step`-th
//     layer), dense MLPs of `intermediate_size_mlp` elsewhere; an MoE layer
//     (Llama4TextMoe) has `num_local_experts` routed experts of `intermediate_size` and
//     one shared expert of `intermediate_size` added ungated; the router (Llama4Router):
//     top-k (num_experts_per_tok, 1 in the Hub models) of the raw logits, gate =
//     sigmoid of the chosen logit, applied to the expert's INPUT (x * gate), the
//     experts' outputs summed without a gate (hf::ModelConfig::router_gate_on_input).
// The experts are stored fused as Llama4TextExperts holds them (FamilySpec::
// experts_fused_transposed): feed_forward.experts.gate_up_proj [E, D, 2F] (gate columns
// first) and feed_forward.experts.down_proj [E, F, D].
// Refused in one line: a multimodal Llama4ForConditionalGeneration config (text_config:
// core/hf/model_config.cpp), partial rotary factors, chunked layers without a chunk size,
// moe_layers or no_rope_layers that do not fit the layers. router_jitter_noise and
// router_aux_loss_coef are ignored as transformers' forward ignores them.
#include <string>

#include "core/hf/json_fields.h"
#include "core/models/family.h"

namespace moelab::models {
namespace {

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const int64_t L = c.num_hidden_layers;
  const int64_t e = f.opt_int("num_local_experts").value_or(16);
  if (e <= 0) f.fail("num_local_experts", "must be a positive integer");
  // MoE layers: moe_layers when given, else every interleave_moe_layer_step-th layer
  // (Llama4TextConfig.__post_init__).
  c.num_experts_per_layer.assign(L, 0);
  if (f.has("moe_layers")) {
    const auto& v = c.raw["moe_layers"];
    if (!v.is_array()) f.fail("moe_layers", "must be a list of layer indices");
    for (const auto& i : v) {
      if (!i.is_number_integer() || i.get<int64_t>() < 0 || i.get<int64_t>() >= L)
        f.fail("moe_layers", "entries must be layer indices in [0, num_hidden_layers = " + std::to_string(L) + ")");
      c.num_experts_per_layer[i.get<int64_t>()] = e;
    }
  } else {
    const int64_t step = f.opt_int("interleave_moe_layer_step").value_or(1);
    if (step < 1) f.fail("interleave_moe_layer_step", "must be a positive integer");
    for (int64_t l = step - 1; l < L; l += step) c.num_experts_per_layer[l] = e;
  }
  c.num_experts_per_tok = f.opt_int("num_experts_per_tok").value_or(1);
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > e)
    f.fail("num_experts_per_tok", "must be in [1, num_local_experts = " + std::to_string(e) + "]");
  c.moe_intermediate_size = f.opt_int("intermediate_size").value_or(8192);
  c.dense_intermediate_size = f.opt_int("intermediate_size_mlp").value_or(16384);
  if (c.moe_intermediate_size <= 0) f.fail("intermediate_size", "must be a positive integer");
  if (c.dense_intermediate_size <= 0) f.fail("intermediate_size_mlp", "must be a positive integer");
  c.shared_expert_intermediate_size = c.moe_intermediate_size;  // Llama4TextMLP(config)
  c.shared_expert_gate = false;

  // The router: top-k of the logits, sigmoid gates on the experts' input.
  c.router.gate_on_input = true;
  c.router.scoring = hf::RouterScoring::kSigmoid;
  c.router.norm_topk_prob = false;
  c.router.correction_bias = false;
  c.router.fp32 = false;
  c.router.bias = false;
  c.router.softmax_over_topk = false;
  c.router.topk_method = hf::TopKMethod::kGreedy;
  c.router.n_group = c.router.topk_group = 1;
  c.router.scaling_factor = 1.0;
  c.expert.bias = false;
  c.expert.swiglu_limit.reset();

  // Attention.
  c.attn.qk_norm = false;  // no weighted q/k norm; the L2 norm below
  c.attn.qk_l2_norm = f.boolean("use_qk_norm", true);
  c.attn.out_bias = c.attn.bias;
  c.attn.sliding_window.reset();
  c.attn.sliding_layers.clear();
  c.attn.sinks = false;
  c.attn.rope_complex = true;
  if (!hf::names_rope_key(c.raw, "rope_theta")) c.rope.theta = 500000.0;
  if (c.rope.partial_rotary_factor != 1.0)
    f.fail("partial_rotary_factor", "is not supported (Llama-4 rotates every channel of a head)");
  c.attn.rope_layers.clear();
  if (f.has("no_rope_layers") && !c.raw["no_rope_layers"].empty()) {
    const auto& v = c.raw["no_rope_layers"];
    if (!v.is_array() || int64_t(v.size()) < L)
      f.fail("no_rope_layers", "must list 0 (NoPE) or 1 (RoPE) for each of the " + std::to_string(L) + " layers");
    for (int64_t l = 0; l < L; ++l) {
      if (!v[l].is_number_integer() || (v[l] != 0 && v[l] != 1))
        f.fail("no_rope_layers", "entries must be 0 (NoPE) or 1 (RoPE)");
      c.attn.rope_layers.push_back(v[l] == 1);
    }
  } else {
    const int64_t interval = f.opt_int("no_rope_layer_interval").value_or(4);
    if (interval < 1) f.fail("no_rope_layer_interval", "must be a positive integer");
    for (int64_t l = 0; l < L; ++l) c.attn.rope_layers.push_back((l + 1) % interval != 0);
  }
  // attention_chunk_size: the class default 8192 when the key is absent, none when null.
  c.attn.chunk_size.reset();
  if (!c.raw.contains("attention_chunk_size")) {
    c.attn.chunk_size = 8192;
  } else if (!c.raw["attention_chunk_size"].is_null()) {
    const int64_t chunk = f.opt_int("attention_chunk_size").value_or(0);
    if (chunk <= 0) f.fail("attention_chunk_size", "must be a positive integer or null");
    c.attn.chunk_size = chunk;
  }
  if (!f.has("layer_types")) {  // Llama4TextConfig: the RoPE layers chunked when a size is set
    c.attn.chunked_layers.clear();
    if (c.attn.chunk_size)
      for (int64_t l = 0; l < L; ++l) c.attn.chunked_layers.push_back(c.attn.uses_rope(l));
  } else if (!c.attn.chunked_layers.empty() && !c.attn.chunk_size) {
    f.fail("attention_chunk_size", "is null, but layer_types has \"chunked_attention\" layers");
  }
  c.attn.temperature_tuning = f.boolean("attn_temperature_tuning", true);
  c.attn.floor_scale = f.number("floor_scale", 8192.0);
  c.attn.attn_scale = f.number("attn_scale", 0.1);
  if (c.attn.temperature_tuning && !(c.attn.floor_scale > 0)) f.fail("floor_scale", "must be positive");
}

}  // namespace

FamilySpec llama4_family() {
  FamilySpec s = family_spec("llama4", "Llama4ForCausalLM", "llama4_text", read_hparams, "num_local_experts");
  s.names.q_norm.clear();
  s.names.k_norm.clear();
  s.names.router = "model.layers.{L}.feed_forward.router.weight";
  s.names.router_fused = s.names.router;
  s.names.expert_gate.clear();  // fused experts only
  s.names.expert_up.clear();
  s.names.expert_down.clear();
  s.names.experts_gate_up_fused = "model.layers.{L}.feed_forward.experts.gate_up_proj";  // [E, D, 2F]
  s.names.experts_down_fused = "model.layers.{L}.feed_forward.experts.down_proj";        // [E, F, D]
  s.experts_fused_transposed = true;
  s.names.experts_ces = "model.layers.{L}.feed_forward.ces";
  s.names.experts_theta = "model.layers.{L}.feed_forward.experts.theta";
  s.names.router_correction_bias.clear();
  s.names.shared_gate = "model.layers.{L}.feed_forward.shared_expert.gate_proj.weight";
  s.names.shared_up = "model.layers.{L}.feed_forward.shared_expert.up_proj.weight";
  s.names.shared_down = "model.layers.{L}.feed_forward.shared_expert.down_proj.weight";
  s.names.mlp_gate = "model.layers.{L}.feed_forward.gate_proj.weight";
  s.names.mlp_up = "model.layers.{L}.feed_forward.up_proj.weight";
  s.names.mlp_down = "model.layers.{L}.feed_forward.down_proj.weight";
  return s;
}

}  // namespace moelab::models
