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
//
// first_target (optional, one per sequence): only tokens at positions >= first_target[b]
// are targets (SFT: the answer's tokens; 1 = every token after the first).
at::Tensor next_token_nll_sum(const at::Tensor& logits_BTV, const at::Tensor& ids_BT,
                              const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target = {});

// Number of targets: sum over sequences of max(length - max(first_target, 1), 0).
int64_t count_next_token_targets(const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target = {});

}  // namespace moelab::models
