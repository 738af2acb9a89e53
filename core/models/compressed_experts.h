// Compressed experts (He et al. 2025, arXiv 2503.00634; hf::ModelConfig::compressed_main
// = k_m, compressed_variant): of a token's top-k routed slots (descending gate) the first
// k_m "main" experts run; the other k - k_m "auxiliary" experts do not run, their learned
// vectors modulate the main experts instead. Two variants (core/models/compressed_experts.cpp
// gives the formulas and where they come from):
//   official   the authors' code (github.com/neilwen987/Compressed-Experts-ts,
//              modeling/modeling_olmoe.py, OlmoeSparseCompressedMoeBlock + OlmoeCEMLP);
//   moelab-v1  moelab's first reading, kept for the checkpoints written with it.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/hf/model_config.h"

namespace moelab::models {

struct ExpertWeights;  // core/models/moe_model.h

// Width W of the official vectors: max(hidden D, moe intermediate F). The authors' code
// has W = D and takes c2 as the first F entries, which needs F <= D (OLMoE, Qwen3-MoE);
// W = max(D, F) is the same tensor there and gives Mixtral (F > D) a full-width c2.
int64_t ces_width(const hf::ModelConfig& c);

// The vectors' shape for a layer of E experts: official [E, 3, W], moelab-v1 [E, D].
std::vector<int64_t> ce_vectors_shape(const hf::ModelConfig& c, int64_t E);

// The member of `w` that holds the variant's vectors (ces_E3W or theta_ED); c compressed.
at::Tensor& ce_vectors_of(ExpertWeights& w, const hf::ModelConfig& c);

// Sets the variant's vectors to ones for the layer's E experts (the authors' init: the
// main experts then run unmodulated), in `options`' dtype and device.
void init_ce_vectors(ExpertWeights& w, const hf::ModelConfig& c, int64_t E, const at::TensorOptions& options);

// The layer's compressed-experts step of routing, for N tokens x [N, D] whose top-k
// slots are ids [N, K] (int64, descending gate) with gates g [N, K] (float32, after the
// family's own normalisation and scaling).
struct CompressedRouting {
  at::Tensor x_in_NC;  // the expert input rows (official: [N, 2D + F] = x*c1 | x*c3 | c2;
                       // moelab-v1: [N, D] = x * theta), compute dtype
  at::Tensor gates_NK;  // gates applied to the main slots [N, K], 0 on the auxiliary
                        // slots, compute dtype
};
CompressedRouting compressed_routing(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND,
                                     const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK);

// Official variant, one local expert on its rows [n, 2D + F] (x*c1 | x*c3 | c2): the
// activation that enters down, act(gate(x*c1)) * up(x*c3) * c2 [n, F] (OlmoeCEMLP.forward).
// `glu(gate, up)` is the family's act(gate) * up.
template <typename Glu>
at::Tensor compressed_activation(const at::Tensor& gate_up_FD2, const at::Tensor& gate_up_bias_F2,
                                 const at::Tensor& rows_nC, Glu&& glu) {
  const int64_t F = gate_up_FD2.size(0) / 2, D = gate_up_FD2.size(1);
  at::Tensor gate = at::matmul(rows_nC.narrow(1, 0, D), gate_up_FD2.narrow(0, 0, F).t());
  at::Tensor up = at::matmul(rows_nC.narrow(1, D, D), gate_up_FD2.narrow(0, F, F).t());
  if (gate_up_bias_F2.defined()) {  // gpt-oss
    gate = gate + gate_up_bias_F2.narrow(0, 0, F);
    up = up + gate_up_bias_F2.narrow(0, F, F);
  }
  return glu(gate, up) * rows_nC.narrow(1, 2 * D, F);
}

}  // namespace moelab::models
