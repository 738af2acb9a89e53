// The decoder forward cut at layer boundaries, for the layer-by-layer calibration
// (runner/jobs/layerwise/layerwise_calibration.h): the same operations, in the same order, as
// forward() (which is built from these pieces), so a layer run on its own gives
// bit-identical hidden states. Shape letters as in moe_model.h.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/models/moe_model.h"

namespace moelab::models {

struct KvStep;  // core/models/blocks.h

// What every layer of one batch needs besides the hidden states: the valid
// positions, RoPE tables and attention masks (cheap to rebuild per layer).
struct BatchContext {
  int64_t B = 0, T = 0;
  at::Tensor valid_N;                // flat indices of the non-padding positions [N] int64
  at::Tensor cos_TA, sin_TA;         // RoPE tables (compute dtype)
  at::Tensor full_mask, window_mask;  // [B, 1, T, T] bool; full_mask undefined when no
                                      // sequence is padded (causal attention, is_causal)
  at::Tensor chunk_mask;              // Llama-4 chunked attention [B, 1, T, T] bool (or undefined)
  // A cached decoding step (forward_cached): the tables are then [B, 1, T, A] (each token's
  // position) and the masks [B, 1, T, kv->keys]; null for a whole-sequence forward.
  const KvStep* kv = nullptr;
};

// Checks the batch (as forward() does; B >= 1) and builds its context on the model's device.
BatchContext batch_context(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths);

// The batch's N valid token ids [N] int64 on the CPU (what MoeObserver::on_batch gets).
at::Tensor valid_token_ids(const at::Tensor& input_ids_BT, const BatchContext& ctx);

// Decoder layer `layer` with weights L on h [B, T, D] (compute dtype, model device):
// attention, then the MoE block (observed) or dense MLP, each with its residual.
at::Tensor decoder_layer_forward(const MoeModel& m, const LayerWeights& L, int64_t layer, const at::Tensor& h_BTD,
                                 const BatchContext& ctx, MoeObserver* observer);

// The final norm and lm_head on the last layer's output h [..., D] -> logits [..., V].
at::Tensor output_logits(const MoeModel& m, const at::Tensor& h);

// A rank without tokens in this step: its share of MoE layer `layer`'s expert
// exchange (B = 0 under expert parallelism). Returns the empty routed output [0, D].
at::Tensor serve_layer_experts(const MoeModel& m, const LayerWeights& L, int64_t layer, MoeObserver* observer);

}  // namespace moelab::models
