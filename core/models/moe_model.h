// The MoE decoder: weights as plain tensors, and a single-device forward that
// reproduces transformers' Mixtral / Qwen3-MoE exactly (fp32 parity <= 1e-4).
//
// Shape letters: B batch, T time (padded length), N valid tokens of a batch
// (flattened, in batch order), D hidden size, H query heads, G key/value heads,
// A head_dim, E routed experts of a layer, K experts per token, F expert
// intermediate size, V vocabulary.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hf/model_config.h"
#include "core/models/expert_dispatch.h"
#include "core/models/family.h"

namespace moelab::models {

struct AttentionWeights {
  at::Tensor wq_HAD, wk_GAD, wv_GAD, wo_DHA;  // stored as Linear weights [out, in]
  at::Tensor bq, bk, bv, bo;                  // undefined when the family has no bias
  at::Tensor q_norm_A, k_norm_A;              // undefined unless config.attn.qk_norm ([H*A], [G*A] when
                                              // not attn.qk_norm_per_head)
  // Multi-head latent attention (config.mla; R q_lora_rank, C kv_lora_rank, P
  // qk_rope_head_dim, Q qk_nope + qk_rope, U v_head_dim): wq_HAD is then q_b_proj [H*Q, R]
  // (or q_proj [H*Q, D] without q_lora_rank), wo_DHA is o_proj [D, H*U], and
  at::Tensor wq_a_RD, q_a_norm_R, bq_a;  // q_a_proj [R, D] (+ bias with attn.bias), q_a_layernorm
  at::Tensor wkv_a_CD, kv_a_norm_C, bkv_a;  // kv_a_proj_with_mqa [C + P, D] (+ bias), kv_a_layernorm [C]
  at::Tensor wkv_b;                         // kv_b_proj [H*(qk_nope + U), C]
  at::Tensor sinks_H;  // gpt-oss attention sinks [H] (config.attn.sinks); undefined otherwise
  // Gated DeltaNet linear attention (config.uses_linear_attention(layer); core/models/gated_deltanet.h),
  // the layer's token mixer instead of the tensors above. Hk/Hv key/value heads, Dk/Dv their
  // widths, C = 2*Hk*Dk + Hv*Dv, W the convolution width. Projections as stored: Qwen3-Next's
  // fused in_qkvz [2*Hk*Dk + 2*Hv*Dv, D] and in_ba [2*Hv, D] (config.linear_attn->fused_projections),
  // or Qwen3.5's in_qkv [C, D], in_z [Hv*Dv, D], in_b [Hv, D], in_a [Hv, D].
  at::Tensor in_qkvz, in_ba, in_qkv, in_z, in_b, in_a;
  at::Tensor conv_C1W;               // depthwise causal convolution [C, 1, W], no bias
  at::Tensor dt_bias_V, A_log_V;     // [Hv] (A_log read in float32: g = -exp(A_log) * softplus(a + dt_bias))
  at::Tensor linear_norm_Dv;         // the gated RMSNorm's weight [Dv] (plain w, not 1 + w)
  at::Tensor linear_out_DV;          // out_proj [D, Hv*Dv]
  bool linear() const { return conv_C1W.defined() || in_qkvz.defined() || in_qkv.defined(); }
};

// The routed experts of one MoE layer, stacked (experts computed grouped). Under
// expert parallelism a process holds the full router but only its own experts:
// global experts [first_local, first_local + num_local()).
struct ExpertWeights {
  at::Tensor router_ED;    // router rows, all E experts
  // DeepSeek-V3 e_score_correction_bias [E] (config.router.correction_bias): replicated
  // and pruned with the router rows; undefined otherwise.
  at::Tensor correction_bias_E;
  at::Tensor gate_up_EFD;  // [E_local, 2F, D]: gate rows first, then up (transformers 5 layout)
  at::Tensor down_EDF;     // [E_local, D, F]
  // gpt-oss (config.router.bias, config.expert.bias): the router bias [E] (all experts,
  // pruned with the router rows) and the local experts' biases, gate_up [E_local, 2F]
  // (gate entries first, then up, like gate_up_EFD's rows) and down [E_local, D];
  // undefined otherwise.
  at::Tensor router_bias_E, gate_up_bias_EF, down_bias_ED;
  // Compressed experts (hf::ModelConfig::compressed_main), all E experts on every rank
  // (like the router), in the compute dtype; at most one of the two is defined:
  //   official:  ces [E, 3, W], W = max(D, F): rows c1 (gate input, first D entries),
  //              c2 (intermediate activation, first F entries), c3 (up input, first D);
  //   moelab-v1: theta [E, D] (the input of gate and up).
  at::Tensor ces_E3W;
  at::Tensor theta_ED;
  // MoNE's novices (hf::ModelConfig::novices_per_layer): [N, D] in the compute dtype,
  // every rank. Router rows num_real() .. num_experts() - 1 are novices: a token routed to
  // one adds gate x novice_ND[id - num_real()] instead of running an expert. Undefined: none.
  at::Tensor novice_ND;
  int64_t first_local = 0;
  // For each of the E experts, its index in the checkpoint it was loaded from (kept
  // through pruning so that results can name experts by their original ids).
  std::vector<int64_t> original_ids;
  int64_t num_experts() const { return router_ED.size(0); }  // routed ids, novices included
  int64_t num_novices() const { return novice_ND.defined() ? novice_ND.size(0) : 0; }
  int64_t num_real() const { return num_experts() - num_novices(); }  // experts with weights
  int64_t num_local() const { return gate_up_EFD.size(0); }
  bool all_local() const { return first_local == 0 && num_local() == num_real(); }
};

struct DenseMlpWeights {
  at::Tensor gate_FD, up_FD, down_DF;
};

// Shared experts of an MoE layer (config.shared_expert_intermediate_size): one MLP that
// every token goes through, beside the routed experts. Kept apart from ExpertWeights
// so that pruning and the criteria never see it; replicated on every rank.
struct SharedExpertWeights {
  DenseMlpWeights mlp;  // [S, D], [S, D], [D, S]
  at::Tensor gate_1D;   // Qwen2-MoE shared_expert_gate [1, D]; undefined otherwise
};

struct LayerWeights {
  at::Tensor attn_norm_D, ffn_norm_D;
  at::Tensor attn_norm_bias_D, ffn_norm_bias_D;  // LayerNorm biases (config.layer_norm); else undefined
  AttentionWeights attn;
  std::optional<ExpertWeights> moe;  // set for MoE layers
  std::optional<SharedExpertWeights> shared;  // MoE layers of families with shared experts
  std::optional<DenseMlpWeights> mlp;  // set for dense layers
};

struct MoeModel {
  hf::ModelConfig config;
  const FamilySpec* family = nullptr;
  at::ScalarType dtype = at::kFloat;  // compute dtype
  at::Device device = at::kCPU;
  at::Tensor embed_VD, final_norm_D, lm_head_VD;  // lm_head aliases embed when tied
  at::Tensor final_norm_bias_D, lm_head_bias_V;   // config.layer_norm / lm_head_bias; else undefined
  std::vector<LayerWeights> layers;
  at::Tensor rope_inv_freq;  // [A/2] float32
  double rope_attention_scaling = 1.0;
  // Where routed rows are computed: this process (default) or, with expert
  // parallelism, the ranks owning the experts (cluster/).
  std::shared_ptr<ExpertDispatcher> dispatcher = std::make_shared<LocalDispatcher>();
};

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  // false: check every tensor's presence and shape, read no data (weights stay
  // undefined). What `moelab inspect` does on checkpoints of any size.
  bool weights = true;
  // Expert parallelism: only the experts this dispatcher computes here are read
  // (every other tensor is checked for shape but not copied); the model keeps it.
  std::shared_ptr<ExpertDispatcher> dispatcher;
};

// Reads a model directory. Throws InputError naming the file for a bad config, an
// unknown architecture, a missing/extra/misshaped tensor.
MoeModel load_model(const std::string& dir, const LoadOptions& opts = {});

// Reads and validates only config.json (and the family); no tensors.
hf::ModelConfig load_config(const std::string& dir);
// The same for a config.json given by its path (moelab train builds models from one).
hf::ModelConfig load_config_file(const std::string& config_json_path);

// Observation points of the MoE blocks (names as in the style of llama.cpp's
// callbacks). Models never compute statistics: collectors subscribe here.
class MoeObserver {
 public:
  virtual ~MoeObserver() = default;
  // At the start of a forward: the token ids of the batch's N valid tokens [N]
  // (int64, batch order); routing taps of this forward refer to these tokens.
  virtual void on_batch(const at::Tensor& token_ids_N) {}
  // After routing a layer: logits [N, E] (compute dtype), chosen experts [N, K]
  // (int64, in descending probability order), gate weights [N, K] (as applied: a slot
  // skipped by NAEE dynamic skipping, hf::ModelConfig::skip_beta, has gate 0).
  virtual void on_routing(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& topk_ids_NK,
                          const at::Tensor& topk_w_NK) {}
  // After one expert (global id) ran on its rows, in the process that computed it:
  // row tags [n] int64 (see DispatchedTokens::tag_M; in one process, the token's
  // index among the layer's N tokens), intermediate activation
  // act(x W_gate^T) * (x W_up^T) [n, F], output [n, D] before gate weighting,
  // gate weights [n].
  virtual void on_expert(int64_t layer, int64_t expert, const at::Tensor& tag_n, const at::Tensor& act_nF,
                         const at::Tensor& out_nD, const at::Tensor& gate_n) {}
  // On the tokens' process, once the expert outputs are back: this process's R = N*K
  // (token, slot) rows, less skipped slots, in expert-sorted order: expert id [R] and token index [R]
  // (int64, into the layer's N tokens), gate weight [R], expert output f_j(x)
  // before gating [R, D].
  virtual void on_combine(int64_t layer, const at::Tensor& expert_R, const at::Tensor& token_R,
                          const at::Tensor& gate_R, const at::Tensor& out_RD) {}
  // After a MoE block, on the tokens' process: the residual stream entering the
  // block h_in [N, D] and the block's routed output y [N, D]: the gate-weighted sum of
  // the routed experts only. Families with shared experts (Qwen2-MoE, DeepSeek) add
  // the shared experts' output s on top, h_out = h_in + y + s; y leaves s out, so that
  // what criteria measure from y is what pruning routed experts can change.
  virtual void on_moe_output(int64_t layer, const at::Tensor& h_in_ND, const at::Tensor& y_ND) {}
  // Dense observation, opt-in (E/K times the expert FLOPs): when true (the same on
  // every rank), each MoE block also runs every expert on every token and reports on
  // the tokens' process the router logits [N, E] and every expert's output before
  // gating [N, E, D]. Outside autograd; the model's own output is unchanged.
  virtual bool wants_all_expert_outputs() const { return false; }
  virtual void on_all_expert_outputs(int64_t layer, const at::Tensor& router_logits_NE, const at::Tensor& out_NED) {}
};

// input_ids [B, T] int64, right-padded; lengths [B] (each >= 1). Returns logits
// [B, T, V] in the compute dtype (rows past a sequence's length are not meaningful).
// B may be 0 under expert parallelism: the process then only serves its experts to
// the other ranks' tokens (it must take part in every layer's exchange).
at::Tensor forward(const MoeModel& model, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                   MoeObserver* observer = nullptr);

// The same pass for an observer only (calibration statistics without gradients): every
// layer runs and is observed exactly as in forward(), but the final norm and lm_head
// [B, T, V] are not computed (on a small model with a large vocabulary they are a
// fifth of the FLOPs and the largest allocation of the pass). B may be 0 as above.
void observe_forward(const MoeModel& model, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                     MoeObserver& observer);

// Parameter counts (elements). Active = per-token parameters: everything except
// the routed experts, plus k routed experts of each MoE layer (k_m with compressed
// experts, whose vectors [E, 3, W] or [E, D] are counted with the routers).
struct ParamCounts {
  int64_t total = 0, embedding = 0, attention = 0, routed_experts = 0, routers = 0, dense_mlp = 0, norms = 0,
          lm_head = 0;
  int64_t shared_experts = 0;  // shared experts (and their gates): active for every token, never pruned
  int64_t active_per_token = 0;
};
ParamCounts count_params(const MoeModel& model);
ParamCounts count_params(const hf::ModelConfig& config);

// Bytes of weights this process holds: replicated (everything but routed experts)
// and its routed experts (under expert parallelism, only its own).
struct WeightBytes {
  int64_t shared = 0, experts = 0;
};
WeightBytes weight_bytes(const MoeModel& model);

}  // namespace moelab::models
