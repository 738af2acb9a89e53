// gpt-oss (transformers `GptOssForCausalLM`, model_type "gpt_oss";
// models/gpt_oss/modeling_gpt_oss.py, configuration_gpt_oss.py):
//   - GQA with biases on q, k, v and o, attention sinks (one learned logit per head in
//     each softmax denominator; core/models/attention.cpp), a sliding window on the layers
//     `layer_types` marks "sliding_attention" (GptOssConfig default: the even layers,
//     window 128), YaRN RoPE (default factor 32 over 4096 positions, theta 150000);
//   - every layer MoE: the router is a Linear with a bias, top-k of its logits, then a
//     softmax over those k (GptOssTopKRouter); experts with biases and a clamped SwiGLU
//     (GptOssExperts._apply_gate; hf::ExpertTraits::swiglu_limit).
// Checkpoint layout of the experts (read and written here; FamilySpec::load_experts):
//   mlp.router.weight [E, D], mlp.router.bias [E]
//   mlp.experts.gate_up_proj [E, D, 2F]: x @ W, its 2F outputs interleaved, gate at even
//     columns and up at odd ones (gate_up[..., ::2], gate_up[..., 1::2]);
//   mlp.experts.gate_up_proj_bias [E, 2F] (interleaved alike)
//   mlp.experts.down_proj [E, F, D], mlp.experts.down_proj_bias [E, D]
// or, in the released checkpoints (quantization_config quant_method "mxfp4"), the two
// weights as MXFP4 (core/hf/mxfp4.h): {gate_up,down}_proj_blocks [E, out, in/32, 16] and
// _scales [E, out, in/32] (uint8), which decode to [E, out, in] (transformers transposes
// that to its [E, in, out]); they are dequantised on load. moelab keeps gate_up as
// [E, 2F, D] with the gate rows first (ExpertWeights), so the interleave is undone on
// load and redone on save. Pruning an unquantised checkpoint slices these tensors along
// the experts as stored (core/models/checkpoint_surgery.h); an MXFP4 one goes through the
// in-memory path and is written dequantised (model_writer.cpp drops
// quantization_config): moelab writes no MXFP4.
#include "core/common/error.h"
#include "core/hf/json_fields.h"
#include "core/hf/mxfp4.h"
#include "core/models/family.h"
#include "core/models/moe_model.h"
#include "core/models/tensor_taker.h"

namespace moelab::models {
namespace {

std::string expert_tensor(int64_t layer, const std::string& what) {
  return "model.layers." + std::to_string(layer) + ".mlp." + what;
}

void read_hparams(hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  // transformers maps num_experts -> num_local_experts (attribute_map).
  const std::string key = f.has("num_local_experts") ? "num_local_experts" : "num_experts";
  c.num_experts_per_layer.assign(c.num_hidden_layers, f.positive_int(key));
  c.num_experts_per_tok = f.positive_int("num_experts_per_tok");
  c.moe_intermediate_size = f.positive_int("intermediate_size");
  // The softmax over the top k sums to 1 already; renormalising changes at most the
  // last bit, and makes NAEE skipping renormalise the kept gates as gpt-oss would.
  c.router.norm_topk_prob = true;
  c.attn.qk_norm = false;
  c.attn.bias = f.boolean("attention_bias", true);
  c.attn.out_bias = c.attn.bias;
  c.attn.sinks = true;
  c.router.bias = true;
  c.router.softmax_over_topk = true;
  c.expert.bias = true;
  c.expert.swiglu_alpha = f.number("swiglu_alpha", 1.702);
  c.expert.swiglu_limit = f.number("swiglu_limit", 7.0);
  if (!(*c.expert.swiglu_limit > 0)) f.fail("swiglu_limit", "must be a positive number");
  // GptOssConfig defaults for what a config.json may leave out.
  if (!f.has("sliding_window") && !c.raw.contains("sliding_window")) c.attn.sliding_window = 128;
  if (c.attn.sliding_layers.empty())
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) c.attn.sliding_layers.push_back(l % 2 == 0);
  if (!c.raw.contains("rope_parameters") && !c.raw.contains("rope_scaling")) {
    c.rope.type = "yarn";
    c.rope.theta = f.number("rope_theta", 150000.0);
    c.rope.factor = 32.0;
    c.rope.beta_fast = 32.0;
    c.rope.beta_slow = 1.0;
    c.rope.truncate = false;
    c.rope.original_max_position_embeddings = 4096;
  }
  if (c.raw.contains("quantization_config") && !c.raw["quantization_config"].is_null()) {
    const auto& q = c.raw["quantization_config"];
    if (!q.is_object() || !q.contains("quant_method") || q["quant_method"] != "mxfp4")
      f.fail("quantization_config", "only quant_method \"mxfp4\" (the released gpt-oss checkpoints) is supported");
  }
}

// Undoes / redoes the interleave of gate and up along `dim` (2F entries).
at::Tensor deinterleave(const at::Tensor& x, int64_t dim) {
  const int64_t n = x.size(dim);
  return at::cat({x.slice(dim, 0, n, 2), x.slice(dim, 1, n, 2)}, dim);
}
at::Tensor interleave(const at::Tensor& x, int64_t dim) {
  const int64_t F = x.size(dim) / 2;
  return at::stack({x.narrow(dim, 0, F), x.narrow(dim, F, F)}, dim + 1).flatten(dim, dim + 1);
}

// One expert projection of layer l as [count, out, in] (a Linear's weight), experts
// [first, first + count): from MXFP4 blocks/scales when the checkpoint has them, else
// from transformers' [E, in, out]. Undefined without weights.
at::Tensor projection(TensorTaker& t, const hf::ModelConfig& c, int64_t l, const std::string& proj, int64_t in,
                      int64_t out, int64_t first, int64_t count) {
  const int64_t E = c.num_experts_per_layer[l];
  const auto& o = t.options();
  const std::string name = expert_tensor(l, "experts." + proj);
  if (t.has(name + "_blocks")) {
    if (in % 32 != 0)
      throw InputError(t.file_of(name + "_blocks"), "MXFP4 tensor \"" + name + "_blocks\" needs an input size (" +
                                                         std::to_string(in) + ") that is a multiple of 32");
    at::Tensor blocks = t.take_stored(name + "_blocks", {E, out, in / 32, 16});
    at::Tensor scales = t.take_stored(name + "_scales", {E, out, in / 32});
    if (!t.weights()) return {};
    at::Tensor w = hf::mxfp4_dequantize(blocks.narrow(0, first, count), scales.narrow(0, first, count));
    t.release(name + "_blocks");
    t.release(name + "_scales");
    return w.to(o.device, o.dtype);  // exact in bfloat16 too (a 2-bit mantissa times a power of 2)
  }
  at::Tensor x = t.take_stored(name, {E, in, out});
  if (!t.weights()) return {};
  x = x.narrow(0, first, count).transpose(1, 2).to(o.device, o.dtype).contiguous();
  t.release(name);
  return x;
}

at::Tensor local_rows(TensorTaker& t, const std::string& name, std::vector<int64_t> shape, int64_t first,
                      int64_t count) {
  at::Tensor x = t.take(name, std::move(shape));
  return x.defined() ? x.narrow(0, first, count).clone() : x;
}

void load_experts(TensorTaker& t, const hf::ModelConfig& c, int64_t l, int64_t first, int64_t count,
                  ExpertWeights& w) {
  const int64_t E = c.num_experts_per_layer[l], D = c.hidden_size, F = c.moe_intermediate_size;
  w.router_ED = t.take(expert_tensor(l, "router.weight"), {E, D});
  w.router_bias_E = t.take(expert_tensor(l, "router.bias"), {E});
  at::Tensor gate_up = projection(t, c, l, "gate_up_proj", D, 2 * F, first, count);
  at::Tensor gate_up_bias = local_rows(t, expert_tensor(l, "experts.gate_up_proj_bias"), {E, 2 * F}, first, count);
  w.down_EDF = projection(t, c, l, "down_proj", F, D, first, count);
  w.down_bias_ED = local_rows(t, expert_tensor(l, "experts.down_proj_bias"), {E, D}, first, count);
  if (!t.weights()) return;
  w.gate_up_EFD = deinterleave(gate_up, 1);
  w.gate_up_bias_EF = deinterleave(gate_up_bias, 1);
}

void save_experts(const ExpertWeights& w, int64_t l, std::vector<std::pair<std::string, at::Tensor>>& out) {
  out.emplace_back(expert_tensor(l, "router.weight"), w.router_ED);
  out.emplace_back(expert_tensor(l, "router.bias"), w.router_bias_E);
  out.emplace_back(expert_tensor(l, "experts.gate_up_proj"), interleave(w.gate_up_EFD, 1).transpose(1, 2).contiguous());
  out.emplace_back(expert_tensor(l, "experts.gate_up_proj_bias"), interleave(w.gate_up_bias_EF, 1));
  out.emplace_back(expert_tensor(l, "experts.down_proj"), w.down_EDF.transpose(1, 2).contiguous());
  out.emplace_back(expert_tensor(l, "experts.down_proj_bias"), w.down_bias_ED);
}

}  // namespace

FamilySpec gpt_oss_family() {
  FamilySpec s = family_spec("gpt_oss", "GptOssForCausalLM", "gpt_oss", read_hparams, "num_local_experts");
  s.names.router = "model.layers.{L}.mlp.router.weight";
  s.names.expert_gate.clear();  // fused experts only (load_experts / save_experts)
  s.names.expert_up.clear();
  s.names.expert_down.clear();
  s.load_experts = load_experts;
  s.save_experts = save_experts;
  return s;
}

}  // namespace moelab::models
