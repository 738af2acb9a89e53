#include "core/models/random_init.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/common/error.h"
#include "core/hf/json_fields.h"
#include "core/models/compressed_experts.h"
#include "core/models/family.h"
#include "core/models/rope.h"

namespace moelab::models {
namespace {

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Hands out the tensors in checkpoint order, numbering the normal ones (see the header).
class Initializer {
 public:
  Initializer(uint64_t seed, double std, const LoadOptions& o) : seed_(seed), std_(std), opts_(o) {}

  // The next normal tensor, float32 on the CPU.
  at::Tensor draw(at::IntArrayRef shape) {
    at::Tensor t = at::empty(shape, at::kFloat);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(tensor_seed(seed_, next_++));
    t.normal_(0.0, std_, gen);
    return t;
  }
  at::Tensor normal(at::IntArrayRef shape) { return place(draw(shape)); }
  // A normal tensor held by another rank: numbered, not drawn.
  void skip() { ++next_; }
  at::Tensor constant(at::IntArrayRef shape, double value) const {
    return at::full(shape, value, at::TensorOptions().dtype(opts_.dtype).device(opts_.device));
  }
  at::Tensor place(const at::Tensor& t) const { return t.to(opts_.device, opts_.dtype); }

 private:
  uint64_t seed_;
  double std_;
  const LoadOptions& opts_;
  int64_t next_ = 0;
};

// Router, then every expert's gate, up, down in order; only [first, first + count) kept.
ExpertWeights init_experts(Initializer& init, const hf::ModelConfig& c, int64_t l, int64_t first, int64_t count) {
  const int64_t E = c.num_experts_per_layer[l], D = c.hidden_size, F = c.moe_intermediate_size;
  ExpertWeights w;
  w.first_local = first;
  w.router_ED = init.normal({E, D});
  at::Tensor gate_up = at::empty({count, 2 * F, D}, at::kFloat), down = at::empty({count, D, F}, at::kFloat);
  for (int64_t e = 0; e < E; ++e) {
    if (e < first || e >= first + count) {
      for (int i = 0; i < 3; ++i) init.skip();
      continue;
    }
    gate_up[e - first].narrow(0, 0, F).copy_(init.draw({F, D}));
    gate_up[e - first].narrow(0, F, F).copy_(init.draw({F, D}));
    down[e - first].copy_(init.draw({D, F}));
  }
  w.gate_up_EFD = init.place(gate_up);
  w.down_EDF = init.place(down);
  if (c.compressed()) ce_vectors_of(w, c) = init.constant(ce_vectors_shape(c, E), 1.0);
  if (c.router.correction_bias) w.correction_bias_E = at::zeros({E}, at::kFloat);  // a float32 buffer, as loaded
  w.original_ids.resize(E);
  for (int64_t e = 0; e < E; ++e) w.original_ids[e] = e;
  return w;
}

// config.json with the values moelab assumed for absent fields written out (see the header).
nlohmann::json explicit_config(const hf::ModelConfig& c, const FamilySpec& fam, double std) {
  nlohmann::json raw = c.raw;
  auto set = [&](const char* key, const nlohmann::json& v) {
    if (!raw.contains(key) || raw[key].is_null()) raw[key] = v;
  };
  auto no_list = [&](const char* key) { return !raw.contains(key) || !raw[key].is_array() || raw[key].empty(); };
  if (no_list("architectures")) raw["architectures"] = {fam.architectures.at(0)};
  set("model_type", fam.model_types.at(0));
  set("num_key_value_heads", c.num_key_value_heads);
  set("head_dim", c.head_dim);
  set("hidden_act", c.hidden_act);
  set("rms_norm_eps", c.rms_norm_eps);
  set("max_position_embeddings", c.max_position_embeddings);
  set("tie_word_embeddings", c.tie_word_embeddings);
  set("initializer_range", std);
  auto has_theta = [&](const char* key) {
    return raw.contains(key) && raw[key].is_object() && raw[key].contains("rope_theta");
  };
  if (!raw.contains("rope_theta") && !has_theta("rope_parameters") && !has_theta("rope_scaling")) {
    if (raw.contains("rope_parameters") && raw["rope_parameters"].is_object())
      raw["rope_parameters"]["rope_theta"] = c.rope.theta;
    else if (raw.contains("rope_scaling") && raw["rope_scaling"].is_object())
      raw["rope_theta"] = c.rope.theta;
    else
      raw["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope.theta}};
  }
  return raw;
}

}  // namespace

double initializer_range(const hf::ModelConfig& c) {
  hf::JsonFields f(c.raw, c.path);
  const double std = f.number("initializer_range", 0.02);
  if (!(std > 0)) f.fail("initializer_range", "must be a positive number");
  return std;
}

uint64_t tensor_seed(uint64_t seed, int64_t k) { return (splitmix64(seed) + uint64_t(k)) & 0xFFFFFFFFull; }

MoeModel random_init_model(const hf::ModelConfig& c, uint64_t seed, const LoadOptions& opts) {
  // gpt-oss's sinks and biases have no init here yet: refuse rather than build a model
  // that lacks tensors transformers expects.
  if (c.attn.sinks || c.expert.bias || c.router.bias)
    throw InputError(c.path, "building a random " + family_for(c).name +
                                 " model is not supported (attention sinks and expert biases have no init)");
  if (c.linear_attn || c.norm_zero_centered)
    throw InputError(c.path, "building a random " + family_for(c).name +
                                 " model is not supported (Gated DeltaNet layers and zero-centred norms have no init)");
  MoeModel m;
  m.config = c;
  m.family = &family_for(c);
  m.dtype = opts.dtype;
  m.device = opts.device;
  if (opts.dispatcher) m.dispatcher = opts.dispatcher;
  const double std = initializer_range(c);
  m.config.raw = explicit_config(c, *m.family, std);
  Initializer init(seed, std, opts);
  const int64_t D = c.hidden_size, V = c.vocab_size, A = c.head_dim;
  const int64_t HA = c.num_attention_heads * A, GA = c.num_key_value_heads * A;

  // nn.Embedding(padding_idx=pad_token_id): transformers zeroes that row.
  at::Tensor embed = init.draw({V, D});
  hf::JsonFields f(c.raw, c.path);
  if (auto pad = f.opt_int("pad_token_id")) {
    if (*pad < 0 || *pad >= V)
      f.fail("pad_token_id",
             std::to_string(*pad) + " is outside the vocabulary (vocab_size " + std::to_string(V) + ")");
    embed[*pad].zero_();
  }
  m.embed_VD = init.place(embed);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights L;
    L.attn_norm_D = init.constant({D}, 1.0);
    L.ffn_norm_D = init.constant({D}, 1.0);
    if (c.layer_norm) {
      L.attn_norm_bias_D = init.constant({D}, 0.0);
      L.ffn_norm_bias_D = init.constant({D}, 0.0);
    }
    auto& a = L.attn;
    if (c.mla) {
      const hf::MlaConfig& x = *c.mla;
      const int64_t H = c.num_attention_heads, R = x.q_lora_rank, C = x.kv_lora_rank, P = x.qk_rope_head_dim;
      if (R > 0) {
        a.wq_a_RD = init.normal({R, D});
        if (c.attn.bias) a.bq_a = init.constant({R}, 0.0);
        a.q_a_norm_R = init.constant({R}, 1.0);
      }
      a.wq_HAD = init.normal({H * x.qk_head_dim(), R > 0 ? R : D});
      a.wkv_a_CD = init.normal({C + P, D});
      if (c.attn.bias) a.bkv_a = init.constant({C + P}, 0.0);
      a.kv_a_norm_C = init.constant({C}, 1.0);
      a.wkv_b = init.normal({H * (x.qk_nope_head_dim + x.v_head_dim), C});
      a.wo_DHA = init.normal({D, H * x.v_head_dim});
    } else {
      a.wq_HAD = init.normal({HA, D});
      a.wk_GAD = init.normal({GA, D});
      a.wv_GAD = init.normal({GA, D});
      a.wo_DHA = init.normal({D, HA});
      if (c.attn.bias) {
        a.bq = init.constant({HA}, 0.0);
        a.bk = init.constant({GA}, 0.0);
        a.bv = init.constant({GA}, 0.0);
      }
      if (c.attn.qk_norm) {
        a.q_norm_A = init.constant({c.attn.qk_norm_per_head ? A : HA}, 1.0);
        a.k_norm_A = init.constant({c.attn.qk_norm_per_head ? A : GA}, 1.0);
      }
    }
    if (c.attn.out_bias) a.bo = init.constant({D}, 0.0);
    if (c.is_moe_layer(l)) {
      const int64_t E = c.num_experts_per_layer[l];
      L.moe = init_experts(init, c, l, m.dispatcher->first_local_expert(l, E), m.dispatcher->num_local_experts(l, E));
      if (c.shared_expert_intermediate_size > 0) {
        const int64_t S = c.shared_expert_intermediate_size;
        SharedExpertWeights sh;
        sh.mlp.gate_FD = init.normal({S, D});
        sh.mlp.up_FD = init.normal({S, D});
        sh.mlp.down_DF = init.normal({D, S});
        if (c.shared_expert_gate) sh.gate_1D = init.normal({1, D});
        L.shared = std::move(sh);
      }
    } else {
      const int64_t F = c.dense_intermediate_size;
      if (F <= 0)
        throw InputError(c.path, "field \"intermediate_size\" is needed for dense layer " + std::to_string(l));
      DenseMlpWeights mlp;
      mlp.gate_FD = init.normal({F, D});
      mlp.up_FD = init.normal({F, D});
      mlp.down_DF = init.normal({D, F});
      L.mlp = std::move(mlp);
    }
    m.layers.push_back(std::move(L));
  }
  m.final_norm_D = init.constant({D}, 1.0);
  if (c.layer_norm) m.final_norm_bias_D = init.constant({D}, 0.0);
  m.lm_head_VD = c.tie_word_embeddings ? m.embed_VD : init.normal({V, D});
  if (c.lm_head_bias) m.lm_head_bias_V = init.constant({V}, 0.0);
  auto [inv_freq, scaling] = rope_inv_freq(c);
  m.rope_inv_freq = inv_freq;
  m.rope_attention_scaling = scaling;
  return m;
}

}  // namespace moelab::models
