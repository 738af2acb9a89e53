// Cached decoding for greedy generation (runner/jobs/eval/generation.h): the keys and values of the
// tokens already run stay in a cache, so each step runs only the new tokens, whose queries
// attend to the cached keys (transformers' DynamicCache; the same masks as forward():
// causal, sliding window, Llama-4 chunks). Shape letters as in moe_model.h; S cache slots
// per sequence, Q and U the MLA key and value widths.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/models/moe_model.h"

namespace moelab::models {

struct KvCache {
  // Per decoder layer, keys and values after projections, norms and RoPE, before
  // grouped-query attention repeats them: [B, G, S, A] each (MLA: keys [B, H, S, Q],
  // values [B, H, S, U]); compute dtype, model device. Undefined until a step writes them.
  std::vector<at::Tensor> k, v;
  // Per Gated DeltaNet layer (core/models/gated_deltanet.h), its recurrent state instead of keys
  // and values: the last W - 1 inputs of its convolution [B, C, W - 1] (compute dtype) and
  // the delta rule's state [B, Hv, Dk, Dv] (float32). Undefined for other layers.
  std::vector<at::Tensor> conv_state, delta_state;
  std::vector<int64_t> lengths;  // tokens cached per sequence [B]; empty before the first step
  // Slots allocated when a layer's cache is first written (context + tokens to generate
  // avoids regrowing); a step that needs more grows the cache to twice the need.
  int64_t reserve = 0;

  // Keeps only the sequences `rows` (increasing indices into the batch), in that order:
  // finished sequences leave the batch.
  void keep(const std::vector<int64_t>& rows);
  // Bytes the cache holds now.
  int64_t bytes() const;
};

// input_ids [B, T] int64, right-padded: the next lengths[b] >= 1 tokens of each of the
// cache's B sequences (with an empty cache, B new sequences from position 0). Runs them
// at their positions (the cached lengths), appends their keys and values to the cache
// and returns the logits of each sequence's last new token [B, V] (compute dtype): for
// the same tokens what forward() computes at those positions. No gradients, no observer.
// B = 0 serves this process's experts to the other ranks' tokens under expert parallelism
// (one call per step on every rank, as forward()).
at::Tensor forward_cached(const MoeModel& model, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                          KvCache& cache);

}  // namespace moelab::models
