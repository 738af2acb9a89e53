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
  std::string type = "default";  // default | linear | llama3 | yarn | longrope
  double theta = 10000.0;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  // yarn
  std::optional<double> attention_factor, mscale, mscale_all_dim;
  double beta_fast = 32.0, beta_slow = 1.0;
  bool truncate = true;
  // longrope (Phi-3.5-MoE; modeling_rope_utils.py _compute_longrope_parameters): per
  // frequency divisors [rotary_dim/2], short_factor up to original_max_position_embeddings
  // positions and long_factor past it; cos/sin scaled by short_mscale / long_mscale when the
  // config names them (PhimoeRotaryEmbedding), else by sqrt(1 + ln(factor) / ln(original)).
  std::vector<double> short_factor, long_factor;
  std::optional<double> short_mscale, long_mscale;
  double partial_rotary_factor = 1.0;
};

// Multi-head latent attention (DeepSeek-V2/V3; transformers
// models/deepseek_v3/modeling_deepseek_v3.py DeepseekV3Attention): queries through an
// optional low-rank q_a/q_b pair, keys and values from one compressed latent of
// kv_lora_rank channels plus qk_rope_head_dim channels of a single shared rotary key.
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0: a full q_proj (DeepSeek-V2-Lite: q_lora_rank null)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  // Rotary pairs (x_2i, x_2i+1) (V2 always, V3 rope_interleave) instead of (x_i, x_i+d/2).
  bool rope_interleave = true;
  double softmax_scale = 1.0;  // qk_head_dim^-0.5, times mscale^2 under YaRN with mscale_all_dim
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

// How the MoE layers' routers score experts and choose the top-k (config.json's words in
// to_string). transformers: DeepseekV3TopkRouter (sigmoid, noaux_tc), DeepseekV2TopkRouter
// (group_limited_greedy), PhimoeTopKRouter (sparsemixer), the plain top-k of the others.
enum class RouterScoring { kSoftmax, kSigmoid };
enum class TopKMethod { kGreedy, kGroupLimitedGreedy, kNoauxTc, kSparsemixer };
const char* to_string(RouterScoring scoring);  // "softmax" | "sigmoid"
const char* to_string(TopKMethod method);      // "greedy" | "group_limited_greedy" | "noaux_tc" | "sparsemixer"
std::optional<TopKMethod> parse_topk_method(const std::string& name);

// A family's router, the traits other code asks about grouped in one place (a family's
// read_hparams sets them; routing.cpp computes them; NAEE, gate ratios, surgery and inspect
// ask the predicates below instead of re-reading the fields).
struct RouterTraits {
  //   scoring: a softmax over the E logits, or a sigmoid of each logit (DeepSeek-V3);
  //   topk_method: kGreedy (plain top-k), kGroupLimitedGreedy (V2: the topk_group groups
  //     with the highest max score) or kNoauxTc (V3: groups ranked by the sum of their two
  //     highest biased scores), experts split into n_group equal groups; kSparsemixer: the
  //     router of PhimoeTopKRouter at inference, top-2 only: slot 0 is the argmax logit m1,
  //     gated by its softmax over the experts whose logits s satisfy
  //     (m1 - s) / max(|s|, m1) <= 2 * jitter_eps; slot 1 the argmax m2 of the others, gated
  //     by its softmax over those others within the same relative distance of m2
  //     (core/models/routing.cpp). No renormalisation, no scaling;
  //   norm_topk_prob: the k gates renormalised to sum 1; norm_topk_min: they divide by
  //     max(sum, norm_topk_min) (ERNIE-4.5 moe_norm_min; 0: by the sum);
  //   correction_bias: e_score_correction_bias [E] added to the scores for the choice of
  //     experts only (V3), the gates stay the unbiased scores;
  //   scaling_factor: the gates are multiplied by it (routed_scaling_factor, after
  //     renormalisation);
  //   fp32: logits computed in float32 whatever the compute dtype (DeepSeek's router casts x
  //     and its weight to float32); otherwise in the compute dtype, softmax in float32;
  //   bias: the router is a Linear with a bias [E] (gpt-oss GptOssTopKRouter);
  //   softmax_over_topk: top-k of the raw logits first, then a softmax over those k (gpt-oss;
  //     the same gates as a softmax over all E renormalised to the k, up to rounding);
  //   gate_on_input: top-k of the raw logits, gate = sigmoid(logit) (float32, cast to the
  //     compute dtype), and the gate scales the EXPERT INPUT (x * gate) instead of its
  //     output; the outputs are summed with weight 1 (Llama-4 Llama4TextMoe.forward).
  RouterScoring scoring = RouterScoring::kSoftmax;
  TopKMethod topk_method = TopKMethod::kGreedy;
  bool norm_topk_prob = true;
  double norm_topk_min = 0.0;
  bool correction_bias = false;
  int64_t n_group = 1, topk_group = 1;
  double scaling_factor = 1.0;
  bool fp32 = false;
  bool bias = false;
  bool softmax_over_topk = false;
  double jitter_eps = 0.01;
  bool gate_on_input = false;

  // Experts split into groups that the top-k chooses among (group_limited_greedy, noaux_tc).
  bool grouped() const {
    return n_group > 1 && (topk_method == TopKMethod::kGroupLimitedGreedy || topk_method == TopKMethod::kNoauxTc);
  }
  // A softmax over the E logits whose plain top-k, unbiased and unscaled, gates the
  // experts' outputs (Mixtral, Qwen, OLMoE): what NAEE's re-routing reproduces.
  bool is_plain_softmax_topk() const {
    return scoring == RouterScoring::kSoftmax && topk_method == TopKMethod::kGreedy && !correction_bias &&
           scaling_factor == 1.0 && !gate_on_input;
  }
  // The gates are a softmax over the E logits and the chosen experts its top-k (whatever the
  // groups or scaling): what NAEE's gate ratios (second / first gate) describe.
  bool gates_are_softmax_topk() const {
    return scoring == RouterScoring::kSoftmax && topk_method != TopKMethod::kSparsemixer && !correction_bias;
  }
  // In words, for messages: "sigmoid scores, noaux_tc over 4 of 8 groups, correction bias,
  // routed_scaling_factor 2.5".
  std::string describe() const;
};

// A family's self-attention, the quirks other code asks about grouped in one place as
// RouterTraits groups the router's (a family's read_hparams sets them; attention.cpp,
// forward.cpp, the loader, param_counts and inspect read them). Multi-head latent attention's
// sizes stay in ModelConfig::mla, RoPE's frequencies in ModelConfig::rope, the Gated DeltaNet
// layers in ModelConfig::linear_layers / linear_attn.
struct AttentionTraits {
  // Biases on the q/k/v projections (config.json "attention_bias"; MLA: on q_a_proj and
  // kv_a_proj).
  bool bias = false;
  // The o_proj bias; bias (config.json "attention_bias") covers q/k/v and, unless a
  // family says otherwise, o (Qwen2-MoE: qkv_bias and no o bias).
  bool out_bias = false;
  bool qk_norm = false;
  // q/k RMSNorm over each head's A channels (Qwen3; weights [A]) or over all heads'
  // channels together (OLMoE; weights [H*A] and [G*A]).
  bool qk_norm_per_head = true;
  // OLMoE clip_qkv: q, k and v clamped to [-clip, clip] after their projections.
  std::optional<double> clip_qkv;
  // gpt-oss (transformers models/gpt_oss/modeling_gpt_oss.py; core/models/families/gpt_oss.cpp):
  //   sinks: one learned logit per query head joins each softmax denominator
  //     (self_attn.sinks [H]; eager_attention_forward), its probability mass dropped.
  bool sinks = false;
  std::optional<int64_t> sliding_window;
  // Per layer: whether it uses sliding_window (config.json "layer_types":
  // "sliding_attention"); empty: every layer does when sliding_window is set.
  std::vector<bool> sliding_layers;
  // ERNIE-4.5 (models/ernie4_5_moe/modeling_ernie4_5_moe.py; core/models/families/ernie4_5_moe.cpp):
  //   rope_interleaved: grouped-query attention rotates the pairs (x_2i, x_2i+1) by
  //     frequency i (its rotate_half on even/odd channels), not (x_i, x_i+A/2).
  bool rope_interleaved = false;
  // Llama-4 (transformers models/llama4/modeling_llama4.py; core/models/families/llama4.cpp):
  //   rope_layers: per layer, whether it applies RoPE (config.json "no_rope_layers", 1 =
  //     RoPE); the others are NoPE layers. Empty: every layer applies RoPE;
  //   rope_complex: RoPE as a complex multiplication of the pairs (x_2i, x_2i+1)
  //     (apply_rotary_emb), computed in float32 from float32 tables, then cast back;
  //   chunk_size, chunked_layers: on the layers config.json "layer_types" marks
  //     "chunked_attention", a query attends only to the causal keys of its own chunk of
  //     chunk_size positions (config.json "attention_chunk_size"; position / chunk equal;
  //     create_chunked_causal_mask);
  //   qk_l2_norm: q and k of each head divided by their RMS (Llama4TextL2Norm, eps
  //     rms_norm_eps, no weight) after RoPE, on RoPE layers only ("use_qk_norm");
  //   temperature_tuning: on NoPE layers, q at position p is multiplied by
  //     log1p(floor((p + 1) / floor_scale)) * attn_scale + 1 ("attn_temperature_tuning").
  std::vector<bool> rope_layers;
  bool rope_complex = false;
  std::optional<int64_t> chunk_size;
  std::vector<bool> chunked_layers;
  bool qk_l2_norm = false;
  bool temperature_tuning = false;
  double floor_scale = 8192.0, attn_scale = 0.1;
  // Qwen3-Next, Qwen3.5-MoE (transformers models/qwen3_next/modeling_qwen3_next.py,
  // models/qwen3_5_moe/modeling_qwen3_5_moe.py; core/models/families/qwen3_next.cpp):
  //   output_gate: q_proj [2*H*A, D] gives each head's queries and a gate, interleaved
  //     per head ([q_h, gate_h]); the attention output is multiplied by sigmoid(gate)
  //     before o_proj (Qwen3NextAttention.forward).
  bool output_gate = false;

  bool uses_sliding_window(int64_t layer) const {
    return sliding_window && (sliding_layers.empty() || sliding_layers.at(layer));
  }
  bool uses_chunked_attention(int64_t layer) const {
    return chunk_size && !chunked_layers.empty() && chunked_layers.at(layer);
  }
  bool uses_rope(int64_t layer) const { return rope_layers.empty() || rope_layers.at(layer); }
};

// The routed experts' MLP, beyond hidden_act (ModelConfig's, shared with the dense MLPs).
// gpt-oss (transformers models/gpt_oss/modeling_gpt_oss.py; core/models/families/gpt_oss.cpp):
//   bias: each expert's gate/up projection has a bias [2F] and its down projection one [D]
//     (GptOssExperts);
//   swiglu_limit: the experts' activation is the clamped SwiGLU of GptOssExperts._apply_gate,
//     gate = min(gate, limit), up = clamp(up, -limit, limit),
//     act = (up + 1) * gate * sigmoid(swiglu_alpha * gate); unset: act(gate) * up.
struct ExpertTraits {
  bool bias = false;
  std::optional<double> swiglu_limit;
  double swiglu_alpha = 1.702;
  bool clamped_swiglu() const { return swiglu_limit.has_value(); }
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
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  int64_t max_position_embeddings = 0;
  AttentionTraits attn;  // the self-attention's quirks (above)
  std::optional<MlaConfig> mla;  // set for multi-head latent attention
  // Shared experts (Qwen2-MoE shared_expert, DeepSeek shared_experts): an MLP of this
  // intermediate size that every token of an MoE layer goes through, outside the router;
  // never pruned. 0: none. shared_expert_gate: its output is scaled per token by
  // sigmoid(x . w) (Qwen2-MoE shared_expert_gate [1, D]).
  int64_t shared_expert_intermediate_size = 0;
  bool shared_expert_gate = false;
  RouterTraits router;  // how the MoE layers route (above)
  // gpt-oss: attn.sinks (AttentionTraits), router.bias and router.softmax_over_topk
  // (RouterTraits), expert.bias and expert.swiglu_limit (ExpertTraits).
  ExpertTraits expert;  // the routed experts' biases and clamped SwiGLU (above)
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";
  // Phi-3.5-MoE (transformers models/phimoe/modeling_phimoe.py; core/models/families/phimoe.cpp):
  //   layer_norm: the decoder norms are nn.LayerNorm (weight and bias, mean subtracted)
  //     instead of RMSNorm, eps rms_norm_eps;
  //   lm_head_bias: lm_head is a Linear with a bias [V];
  //   (router.topk_method kSparsemixer: RouterTraits)
  bool layer_norm = false;
  bool lm_head_bias = false;
  // ERNIE-4.5: attn.rope_interleaved (AttentionTraits), router.norm_topk_min (RouterTraits).
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
  // {"main": k_m, "variant": V}`. Of a token's k routed experts the k_m with the highest
  // gates run, modulated by vectors of the other k - k_m (core/models/routing.cpp); 0 = off.
  // 1 <= k_m < k is checked once k is known (models::load_config). V:
  //   "official"  the authors' code (OlmoeSparseCompressedMoeBlock): three vectors per
  //               expert (`mlp.ces` [E, 3, W]), main experts weighted by their original gates;
  //   "moelab-v1" moelab's first reading: one vector per expert (`mlp.experts.theta`
  //               [E, D]) on the expert input, main gates renormalised over the main experts.
  // A config without "variant" was written before variants existed: moelab-v1.
  int64_t compressed_main = 0;
  std::string compressed_variant;  // "official" | "moelab-v1" (set when compressed_main > 0)
  bool compressed() const { return compressed_main > 0; }
  bool compressed_official() const { return compressed() && compressed_variant == "official"; }
  // MoNE's novices (moelab prune --substitute novices; arXiv 2507.00390): per decoder
  // layer, how many dropped experts were replaced by a constant vector (their mean output
  // over calibration tokens), `moelab_novices_per_layer`. The router keeps a row for each:
  // num_experts_per_layer[l] real experts first, then the novices (core/models/moe_block.cpp).
  // Empty: none.
  std::vector<int64_t> novices_per_layer;
  int64_t novices_of(int64_t layer) const { return novices_per_layer.empty() ? 0 : novices_per_layer.at(layer); }
  bool has_novices() const {
    for (int64_t n : novices_per_layer)
      if (n > 0) return true;
    return false;
  }
  nlohmann::json raw;  // the whole config.json, kept so that saving preserves unknown keys
  // A multimodal checkpoint's architecture when this is its text model (core/hf/text_part.h; raw
  // is then its text_config); empty otherwise.
  std::string text_part_of;

  // Llama-4: NoPE layers, complex RoPE, chunked attention, the L2 q/k norm and temperature
  // tuning in attn (AttentionTraits), router.gate_on_input (RouterTraits).

  // Hybrid attention (Qwen3-Next, Qwen3.5-MoE; transformers models/qwen3_next/
  // modeling_qwen3_next.py, models/qwen3_5_moe/modeling_qwen3_5_moe.py; core/models/families/qwen3_next.cpp):
  //   linear_layers: per layer, whether its token mixer is Gated DeltaNet linear attention
  //     (config.json "layer_types": "linear_attention"; core/models/gated_deltanet.h) instead of
  //     self-attention; empty: none is. A family that reads linear_attn sets it up;
  //     models::load_config refuses linear layers otherwise;
  //   (attn.output_gate, the full-attention layers' gate: AttentionTraits)
  //   norm_zero_centered: every RMSNorm with a weight (decoder, final, q/k norms) scales
  //     by (1 + w) in float32, then casts back (Qwen3NextRMSNorm; weights init to 0).
  std::vector<bool> linear_layers;
  bool uses_linear_attention(int64_t layer) const { return !linear_layers.empty() && linear_layers.at(layer); }
  struct LinearAttention {
    int64_t num_k_heads = 0, num_v_heads = 0;  // Hk, Hv (Hv a multiple of Hk)
    int64_t k_head_dim = 0, v_head_dim = 0;    // Dk, Dv
    int64_t conv_kernel = 4;                   // the causal depthwise convolution's width
    // Qwen3-Next's in_proj_qkvz [2*Hk*Dk + 2*Hv*Dv, D] and in_proj_ba [2*Hv, D], grouped by
    // key head (fix_query_key_value_ordering); else Qwen3.5's in_proj_qkv, _z, _b, _a.
    bool fused_projections = true;
    int64_t key_dim() const { return num_k_heads * k_head_dim; }
    int64_t value_dim() const { return num_v_heads * v_head_dim; }
    int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
  };
  std::optional<LinearAttention> linear_attn;
  bool norm_zero_centered = false;

  int64_t num_routed_experts_max() const;
  bool is_moe_layer(int64_t layer) const { return num_experts_per_layer.at(layer) > 0; }
  // MoE layers only: decoder-layer index -> routed experts.
  std::map<int64_t, int64_t> moe_layer_experts() const;
};

// Reads and validates config.json. Throws InputError naming the file and the field.
ModelConfig read_model_config(const std::string& config_json_path);

// Whether config.json names a RoPE setting `key` at all, top-level (transformers 4.x) or in
// rope_parameters / rope_scaling (5.x): families whose config classes default it
// differently from other models (GLM-4.5's partial_rotary_factor 0.5) ask before setting it.
bool names_rope_key(const nlohmann::json& raw, const std::string& key);

}  // namespace moelab::hf
