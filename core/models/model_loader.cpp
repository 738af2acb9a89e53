// checkpoint directory -> MoeModel. Strict: every tensor the config implies must be
// present with the expected shape, and every tensor in the files must be used.
#include <filesystem>
#include <sstream>

#include "core/common/error.h"
#include "core/common/log.h"
#include "core/hf/checkpoint.h"
#include "core/hf/json_fields.h"
#include "core/models/compressed_experts.h"
#include "core/models/layer_loader.h"
#include "core/models/moe_model.h"
#include "core/models/rope.h"
#include "core/models/tensor_taker.h"

namespace moelab::models {
namespace {

// Reads the router and the experts [first, first + count) of layer l; the other
// experts' tensors are checked for shape only.
ExpertWeights load_experts(TensorTaker& t, const FamilySpec& fam, const hf::ModelConfig& c, int64_t l, int64_t first,
                           int64_t count) {
  const TensorNames& n = fam.names;
  const int64_t E = c.num_experts_per_layer[l], D = c.hidden_size, F = c.moe_intermediate_size;
  const int64_t R = E + c.novices_of(l);  // router rows: the real experts, then the novices
  ExpertWeights w;
  w.first_local = first;
  const std::string fused_gu = tensor_name(n.experts_gate_up_fused, l);
  if (fam.load_experts) {  // a layout of the family's own (gpt-oss)
    fam.load_experts(t, c, l, first, count, w);
  } else if (t.has(fused_gu)) {
    w.router_ED = t.take(t.has(tensor_name(n.router, l)) ? tensor_name(n.router, l) : tensor_name(n.router_fused, l),
                         {R, D});
    // Views of the memory-mapped file: only the local experts' pages are touched,
    // copied (and converted) without a copy of the other experts, and dropped once copied.
    auto local = [&](const std::string& name, std::vector<int64_t> shape) {
      t.uncount((E - count) * shape[1] * shape[2]);  // only `count` experts are kept
      at::Tensor x = t.take_stored(name, std::move(shape));
      if (!x.defined()) return x;
      const auto& o = t.options();
      x = x.narrow(0, first, count).to(o.device, o.dtype, /*non_blocking=*/false, /*copy=*/true);
      t.release(name);
      return x;
    };
    if (fam.experts_fused_transposed) {  // Llama-4: [E, D, 2F] and [E, F, D] (x @ W)
      w.gate_up_EFD = local(fused_gu, {E, D, 2 * F});
      w.down_EDF = local(tensor_name(n.experts_down_fused, l), {E, F, D});
      if (w.gate_up_EFD.defined()) {
        w.gate_up_EFD = w.gate_up_EFD.transpose(1, 2).contiguous();
        w.down_EDF = w.down_EDF.transpose(1, 2).contiguous();
      }
    } else {
      w.gate_up_EFD = local(fused_gu, {E, 2 * F, D});
      w.down_EDF = local(tensor_name(n.experts_down_fused, l), {E, D, F});
    }
  } else {
    w.router_ED = t.take(tensor_name(n.router, l), {R, D});
    // Copied one expert at a time into the stacked tensors, converted by the copy itself
    // (no temporary in the compute dtype), each source's mapped pages dropped right
    // after: peak memory is the result plus one expert's pages.
    const auto& o = t.options();
    if (t.weights()) {
      auto opts = at::TensorOptions().dtype(o.dtype).device(o.device);
      w.gate_up_EFD = at::empty({count, 2 * F, D}, opts);
      w.down_EDF = at::empty({count, D, F}, opts);
    }
    for (int64_t e = 0; e < E; ++e) {
      const bool mine = e >= first && e < first + count;
      if (!mine) {
        t.check(tensor_name(n.expert_gate, l, e), {F, D});
        t.check(tensor_name(n.expert_up, l, e), {F, D});
        t.check(tensor_name(n.expert_down, l, e), {D, F});
        continue;
      }
      const std::string gate = tensor_name(n.expert_gate, l, e), up = tensor_name(n.expert_up, l, e),
                        down = tensor_name(n.expert_down, l, e);
      at::Tensor g = t.take_stored(gate, {F, D}), u = t.take_stored(up, {F, D}), d = t.take_stored(down, {D, F});
      if (!t.weights()) continue;
      w.gate_up_EFD[e - first].narrow(0, 0, F).copy_(g);
      w.gate_up_EFD[e - first].narrow(0, F, F).copy_(u);
      w.down_EDF[e - first].copy_(d);
      for (const auto* name : {&gate, &up, &down}) t.release(*name);
    }
  }
  // Compressed experts (core/models/compressed_experts.h): the variant's vectors, official ces
  // [E, 3, W] or moelab-v1 theta [E, D], replicated like the router (every rank computes
  // its tokens' vectors). Absent from a compressed checkpoint: ones (moelab compress).
  // The other variant's tensor is refused rather than ignored.
  const std::string ces = tensor_name(n.experts_ces, l), theta = tensor_name(n.experts_theta, l);
  if (c.compressed()) {
    const bool official = c.compressed_official();
    const std::string &mine = official ? ces : theta, &other = official ? theta : ces;
    if (t.has(other))
      throw InputError(c.path, "field \"moelab_compressed_experts\": variant \"" + c.compressed_variant +
                                   "\" reads \"" + mine + "\", but the checkpoint has \"" + other +
                                   "\" (the other variant's vectors)");
    ce_vectors_of(w, c) = t.take_optional(mine, ce_vectors_shape(c, E));
    if (!t.has(mine) && t.weights())
      init_ce_vectors(w, c, E, at::TensorOptions().dtype(t.options().dtype).device(t.options().device));
  } else if (t.has(theta) || t.has(ces)) {
    throw InputError(c.path, "the checkpoint has \"" + (t.has(theta) ? theta : ces) +
                                 "\" (compressed experts) but config.json has no \"moelab_compressed_experts\"");
  }
  if (c.router.correction_bias) {
    // Stored in float32 by transformers (a buffer); read as such whatever the compute dtype.
    w.correction_bias_E = n.correction_bias_row ? t.take(tensor_name(n.router_correction_bias, l), {1, E})
                                                : t.take(tensor_name(n.router_correction_bias, l), {E});
    if (w.correction_bias_E.defined()) w.correction_bias_E = w.correction_bias_E.reshape({E}).to(at::kFloat);
  }
  // Novices (MoNE): one constant output vector per replaced expert, replicated like the router.
  const std::string novices = tensor_name(n.experts_novices, l);
  if (c.novices_of(l) > 0) {
    w.novice_ND = t.take(novices, {c.novices_of(l), D});
  } else if (t.has(novices)) {
    throw InputError(c.path, "the checkpoint has \"" + novices + "\" (MoNE novices) but config.json's "
                                                                   "\"moelab_novices_per_layer\" gives layer " +
                                 std::to_string(l) + " none");
  }
  w.original_ids.resize(R);
  for (int64_t e = 0; e < R; ++e) w.original_ids[e] = e;
  return w;
}

AttentionWeights load_attention(TensorTaker& t, const TensorNames& n, const hf::ModelConfig& c, int64_t l) {
  const int64_t D = c.hidden_size, A = c.head_dim, H = c.num_attention_heads;
  const int64_t HA = H * A, GA = c.num_key_value_heads * A;
  auto bias = [&](const std::string& tmpl) { return tensor_name(tmpl, l, -1, "bias"); };
  AttentionWeights a;
  if (c.uses_linear_attention(l)) {
    // Gated DeltaNet (core/models/gated_deltanet.h): every tensor named in the refusal when missing.
    const auto& x = *c.linear_attn;
    const int64_t K = x.key_dim(), V = x.value_dim(), Hv = x.num_v_heads;
    if (x.fused_projections) {
      a.in_qkvz = t.take(tensor_name(n.linear_qkvz, l), {2 * K + 2 * V, D});
      a.in_ba = t.take(tensor_name(n.linear_ba, l), {2 * Hv, D});
    } else {
      a.in_qkv = t.take(tensor_name(n.linear_qkv, l), {2 * K + V, D});
      a.in_z = t.take(tensor_name(n.linear_z, l), {V, D});
      a.in_b = t.take(tensor_name(n.linear_b, l), {Hv, D});
      a.in_a = t.take(tensor_name(n.linear_a, l), {Hv, D});
    }
    a.conv_C1W = t.take(tensor_name(n.linear_conv, l), {x.conv_dim(), 1, x.conv_kernel});
    a.dt_bias_V = t.take(tensor_name(n.linear_dt_bias, l), {Hv});
    a.A_log_V = t.take(tensor_name(n.linear_A_log, l), {Hv});
    a.linear_norm_Dv = t.take(tensor_name(n.linear_norm, l), {x.v_head_dim});
    a.linear_out_DV = t.take(tensor_name(n.linear_out, l), {D, V});
    return a;
  }
  if (c.mla) {
    const hf::MlaConfig& x = *c.mla;
    const int64_t C = x.kv_lora_rank, P = x.qk_rope_head_dim, R = x.q_lora_rank;
    if (R > 0) {
      a.wq_a_RD = t.take(tensor_name(n.q_a_proj, l), {R, D});
      if (c.attn.bias) a.bq_a = t.take(bias(n.q_a_proj), {R});
      a.q_a_norm_R = t.take(tensor_name(n.q_a_norm, l), {R});
      a.wq_HAD = t.take(tensor_name(n.q_b_proj, l), {H * x.qk_head_dim(), R});
    } else {
      a.wq_HAD = t.take(tensor_name(n.q_proj, l), {H * x.qk_head_dim(), D});
    }
    a.wkv_a_CD = t.take(tensor_name(n.kv_a_proj, l), {C + P, D});
    if (c.attn.bias) a.bkv_a = t.take(bias(n.kv_a_proj), {C + P});
    a.kv_a_norm_C = t.take(tensor_name(n.kv_a_norm, l), {C});
    a.wkv_b = t.take(tensor_name(n.kv_b_proj, l), {H * (x.qk_nope_head_dim + x.v_head_dim), C});
    a.wo_DHA = t.take(tensor_name(n.o_proj, l), {D, H * x.v_head_dim});
    if (c.attn.out_bias) a.bo = t.take(bias(n.o_proj), {D});
    return a;
  }
  a.wq_HAD = t.take(tensor_name(n.q_proj, l), {c.attn.output_gate ? 2 * HA : HA, D});
  a.wk_GAD = t.take(tensor_name(n.k_proj, l), {GA, D});
  a.wv_GAD = t.take(tensor_name(n.v_proj, l), {GA, D});
  a.wo_DHA = t.take(tensor_name(n.o_proj, l), {D, HA});
  if (c.attn.bias) {
    a.bq = t.take(bias(n.q_proj), {c.attn.output_gate ? 2 * HA : HA});
    a.bk = t.take(bias(n.k_proj), {GA});
    a.bv = t.take(bias(n.v_proj), {GA});
  }
  if (c.attn.out_bias) a.bo = t.take(bias(n.o_proj), {D});
  if (c.attn.qk_norm) {
    a.q_norm_A = t.take(tensor_name(n.q_norm, l), {c.attn.qk_norm_per_head ? A : HA});
    a.k_norm_A = t.take(tensor_name(n.k_norm, l), {c.attn.qk_norm_per_head ? A : GA});
  }
  if (c.attn.sinks) a.sinks_H = t.take(tensor_name(n.sinks, l), {H});
  return a;
}

// Decoder layer l: norms, attention, and the MoE block (this process's experts under
// `dispatcher`, shared experts) or the dense MLP.
LayerWeights load_layer_weights(TensorTaker& t, const FamilySpec& fam, const hf::ModelConfig& c, int64_t l,
                                const ExpertDispatcher& dispatcher) {
  const TensorNames& n = fam.names;
  const int64_t D = c.hidden_size;
  LayerWeights L;
  L.attn_norm_D = t.take(tensor_name(n.attn_norm, l), {D});
  L.ffn_norm_D = t.take(tensor_name(n.ffn_norm, l), {D});
  if (c.layer_norm) {
    L.attn_norm_bias_D = t.take(tensor_name(n.attn_norm_bias, l), {D});
    L.ffn_norm_bias_D = t.take(tensor_name(n.ffn_norm_bias, l), {D});
  }
  L.attn = load_attention(t, n, c, l);
  if (c.is_moe_layer(l)) {
    const int64_t E = c.num_experts_per_layer[l];
    L.moe = load_experts(t, fam, c, l, dispatcher.first_local_expert(l, E), dispatcher.num_local_experts(l, E));
    if (c.shared_expert_intermediate_size > 0) {  // replicated on every rank, like attention
      const int64_t S = c.shared_expert_intermediate_size;
      SharedExpertWeights sh;
      sh.mlp = DenseMlpWeights{t.take(tensor_name(n.shared_gate, l), {S, D}), t.take(tensor_name(n.shared_up, l), {S, D}),
                               t.take(tensor_name(n.shared_down, l), {D, S})};
      if (c.shared_expert_gate) sh.gate_1D = t.take(tensor_name(n.shared_expert_gate, l), {1, D});
      L.shared = std::move(sh);
    }
  } else {
    const int64_t F = c.dense_intermediate_size;
    if (F <= 0) throw InputError(c.path, "field \"intermediate_size\" is needed for dense layer " + std::to_string(l));
    L.mlp = DenseMlpWeights{t.take(tensor_name(n.mlp_gate, l), {F, D}), t.take(tensor_name(n.mlp_up, l), {F, D}),
                            t.take(tensor_name(n.mlp_down, l), {D, F})};
  }
  return L;
}

}  // namespace

hf::ModelConfig load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!std::filesystem::exists(path)) throw InputError(dir, "no config.json in the model directory");
  return load_config_file(path);
}

hf::ModelConfig load_config_file(const std::string& path) {
  hf::ModelConfig c = hf::read_model_config(path);
  const FamilySpec& fam = family_for(c);
  fam.read_hparams(c);
  // Checkpoints pruned unevenly by moelab carry one count per layer.
  if (c.raw.contains("moelab_num_experts_per_layer")) {
    const auto& v = c.raw["moelab_num_experts_per_layer"];
    if (!v.is_array() || int64_t(v.size()) != c.num_hidden_layers)
      throw InputError(path, "field \"moelab_num_experts_per_layer\" must list one count per layer");
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      if (!v[l].is_number_integer() || v[l].get<int64_t>() < 0)
        throw InputError(path, "field \"moelab_num_experts_per_layer\" must hold non-negative integers");
      if (c.num_experts_per_layer[l] > 0) c.num_experts_per_layer[l] = v[l].get<int64_t>();
    }
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l) && c.num_experts_per_layer[l] < c.num_experts_per_tok)
      throw InputError(path, "layer " + std::to_string(l) + " has " + std::to_string(c.num_experts_per_layer[l]) +
                                 " experts, fewer than num_experts_per_tok = " + std::to_string(c.num_experts_per_tok));
  if (c.router.topk_method == hf::TopKMethod::kGroupLimitedGreedy || c.router.topk_method == hf::TopKMethod::kNoauxTc) {
    if (c.router.n_group < 1 || c.router.topk_group < 1 || c.router.topk_group > c.router.n_group)
      throw InputError(path, "fields \"n_group\" = " + std::to_string(c.router.n_group) + " and \"topk_group\" = " +
                                 std::to_string(c.router.topk_group) + " must satisfy 1 <= topk_group <= n_group");
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (c.is_moe_layer(l) && c.num_experts_per_layer[l] % c.router.n_group != 0)
        throw InputError(path, "layer " + std::to_string(l) + " has " + std::to_string(c.num_experts_per_layer[l]) +
                                   " experts, not a multiple of n_group = " + std::to_string(c.router.n_group));
  }
  if (c.compressed() && c.compressed_main >= c.num_experts_per_tok)
    throw InputError(path, "field \"moelab_compressed_experts\": main = " + std::to_string(c.compressed_main) +
                               " must be below num_experts_per_tok = " + std::to_string(c.num_experts_per_tok) +
                               " (at least one auxiliary expert)");
  if (c.compressed() && !c.skip_beta.empty())
    throw InputError(path, "fields \"moelab_compressed_experts\" and \"moelab_skip_beta\" cannot be combined");
  if (c.has_novices()) {
    // Novices (MoNE) replace experts behind a plain router: a weight [E, D], no bias, no
    // correction bias, gates on the output.
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (c.novices_of(l) > 0 && !c.is_moe_layer(l))
        throw InputError(path, "field \"moelab_novices_per_layer\": layer " + std::to_string(l) +
                                   " is dense and cannot have novices");
    if (fam.load_experts || c.router.correction_bias || c.router.gate_on_input || c.compressed() ||
        !c.skip_beta.empty())
      throw InputError(path, "field \"moelab_novices_per_layer\" is not supported by " + fam.name +
                                 (c.compressed() || !c.skip_beta.empty()
                                      ? " together with compressed experts or NAEE skipping"
                                      : " (novices need a plain softmax router gating the experts' outputs)"));
  }
  if (!c.linear_layers.empty() && !c.linear_attn)
    throw InputError(path, "field \"layer_types\": \"linear_attention\" is not supported by " + fam.name +
                               " (only Qwen3-Next and Qwen3.5-MoE read the Gated DeltaNet sizes)");
  if (!c.attn.chunked_layers.empty() && !c.attn.chunk_size)
    throw InputError(path, "field \"layer_types\": \"chunked_attention\" is not supported by " + fam.name +
                               " (only Llama-4 reads attention_chunk_size)");
  if (c.router.gate_on_input && !c.skip_beta.empty())
    throw InputError(path, "field \"moelab_skip_beta\" (NAEE dynamic skipping) is not supported by " + fam.name +
                               " (its sigmoid gates scale the experts' input; skipping compares softmax gates)");
  if (c.router.gate_on_input && c.compressed())
    throw InputError(path, "field \"moelab_compressed_experts\" is not supported by " + fam.name +
                               " (its router gates the experts' input, not their output)");
  if (c.hidden_act != "silu" && c.hidden_act != "gelu" && c.hidden_act != "gelu_pytorch_tanh" && c.hidden_act != "relu")
    throw InputError(path, "field \"hidden_act\" \"" + c.hidden_act +
                               "\" is not supported (supported: silu, gelu, gelu_pytorch_tanh, relu)");
  return c;
}

MoeModel load_model(const std::string& dir, const LoadOptions& opts) {
  MoeModel m;
  m.config = load_config(dir);
  m.family = &family_for(m.config);
  m.dtype = opts.dtype;
  m.device = opts.device;
  if (opts.dispatcher) m.dispatcher = opts.dispatcher;
  const auto& c = m.config;
  const auto& n = m.family->names;
  hf::Checkpoint ck(dir);
  TensorTaker t(ck, opts);
  const int64_t D = c.hidden_size, V = c.vocab_size;

  m.embed_VD = t.take(n.embed, {V, D});
  m.final_norm_D = t.take(n.final_norm, {D});
  if (c.layer_norm) m.final_norm_bias_D = t.take(n.final_norm_bias, {D});
  if (c.lm_head_bias) m.lm_head_bias_V = t.take(n.lm_head_bias, {V});
  if (c.tie_word_embeddings) {
    m.lm_head_VD = m.embed_VD;
    if (ck.has(n.lm_head)) ck.mark_used(n.lm_head);
  } else {
    m.lm_head_VD = t.take(n.lm_head, {V, D});
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) m.layers.push_back(load_layer_weights(t, *m.family, c, l, *m.dispatcher));
  std::vector<std::string> extra;
  for (const auto& name : ck.unused())
    if (name.find("rotary_emb.inv_freq") == std::string::npos && !is_mtp_tensor(*m.family, name, c.num_hidden_layers))
      extra.push_back(name);
  if (!extra.empty())
    throw InputError(ck.file_of(extra[0]), std::to_string(extra.size()) + " tensor(s) that " + m.family->name +
                                               " does not use, e.g. \"" + extra[0] +
                                               "\" (does config.json match the weights?)");
  auto [inv_freq, scaling] = rope_inv_freq(c);
  m.rope_inv_freq = inv_freq;
  m.rope_attention_scaling = scaling;
  spdlog::debug("loaded {} ({} layers) from {}", c.architecture, c.num_hidden_layers, dir);
  return m;
}

MoeModel load_model_shell(const std::string& dir, const LoadOptions& opts) {
  LoadOptions check_only = opts;
  check_only.weights = false;
  MoeModel m = load_model(dir, check_only);  // validates every tensor, reads none
  const auto meta = at::TensorOptions().dtype(opts.dtype).device(at::kMeta);
  const int64_t D = m.config.hidden_size, F = m.config.moe_intermediate_size;
  for (int64_t l = 0; l < int64_t(m.layers.size()); ++l) {
    auto& moe = m.layers[l].moe;
    if (!moe) continue;
    const int64_t E = int64_t(moe->original_ids.size()), count = m.dispatcher->num_local_experts(l, E);
    moe->router_ED = at::empty({E, D}, meta);
    moe->gate_up_EFD = at::empty({count, 2 * F, D}, meta);
    moe->down_EDF = at::empty({count, D, F}, meta);
  }
  return m;
}

void load_layer(MoeModel& m, const std::string& dir, int64_t l, const LoadOptions& opts) {
  hf::Checkpoint ck(dir);
  LoadOptions o = opts;
  o.weights = true;
  TensorTaker t(ck, o, /*owned=*/true);
  m.layers.at(l) = load_layer_weights(t, *m.family, m.config, l, *m.dispatcher);
}  // the mapping goes with ck: nothing of the file stays resident

void load_output_head(MoeModel& m, const std::string& dir, const LoadOptions& opts) {
  hf::Checkpoint ck(dir);
  LoadOptions o = opts;
  o.weights = true;
  TensorTaker t(ck, o, /*owned=*/true);
  const auto& c = m.config;
  const auto& n = m.family->names;
  const int64_t D = c.hidden_size, V = c.vocab_size;
  m.final_norm_D = t.take(n.final_norm, {D});
  if (c.layer_norm) m.final_norm_bias_D = t.take(n.final_norm_bias, {D});
  if (c.lm_head_bias) m.lm_head_bias_V = t.take(n.lm_head_bias, {V});
  m.lm_head_VD = t.take(c.tie_word_embeddings ? n.embed : n.lm_head, {V, D});
}

void drop_output_head(MoeModel& m) {
  m.final_norm_D = m.final_norm_bias_D = m.lm_head_VD = m.lm_head_bias_V = at::Tensor();
}

namespace {

// Goes through layer l's tensors as load_layer takes them, reading none, then hands the
// checkpoint and the taker (names and element counts taken) to f.
template <class F>
void walk_layer(const MoeModel& m, const std::string& dir, int64_t l, F&& f) {
  hf::Checkpoint ck(dir);
  LoadOptions o;
  o.weights = false;
  TensorTaker t(ck, o);
  load_layer_weights(t, *m.family, m.config, l, *m.dispatcher);
  f(ck, t);
}

}  // namespace

void prefetch_layer(const MoeModel& m, const std::string& dir, int64_t l) {
  walk_layer(m, dir, l, [](const hf::Checkpoint& ck, const TensorTaker& t) {
    for (const auto& name : t.names()) ck.prefetch(name);
  });
}

int64_t layer_weight_bytes(const MoeModel& m, const std::string& dir, int64_t l) {
  int64_t elements = 0;
  walk_layer(m, dir, l, [&](const hf::Checkpoint&, const TensorTaker& t) { elements = t.taken_elements(); });
  return elements * int64_t(at::elementSize(m.dtype));
}

at::Tensor embed_from_checkpoint(const MoeModel& m, const std::string& dir, const at::Tensor& input_ids_BT) {
  hf::Checkpoint ck(dir);
  const std::string& name = m.family->names.embed;
  // Rows gathered from the mapping, then converted: the same values as converting
  // the whole matrix first (load_model), without holding it.
  at::Tensor h = at::embedding(ck.tensor(name), input_ids_BT.cpu()).to(m.dtype);
  ck.release(name);
  return h;
}

}  // namespace moelab::models
