// The causal language-modelling loss, as transformers computes it for labels =
// input_ids (shifted by one inside the loss): position t of sequence b predicts
// token t + 1, for t < length_b - 1; padding is never a target.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace moelab::models {

// Sum over every target of -log softmax(logits[b, t])[ids[b, t + 1]] (log-softmax in
// float32). logits [B, T, V], ids [B, T] int64, lengths [B]. Returns a float32 scalar,
// differentiable; with no targets, a zero that still depends on the logits.
at::Tensor next_token_nll_sum(const at::Tensor& logits_BTV, const at::Tensor& ids_BT,
                              const std::vector<int64_t>& lengths);

// Number of targets: sum over sequences of max(length - 1, 0).
int64_t count_next_token_targets(const std::vector<int64_t>& lengths);

}  // namespace moelab::models
