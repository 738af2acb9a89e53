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

// Knowledge distillation on the same targets: sum over every target position (b, t) of
// KL(p_teacher || p_student) = sum_v p_T(v) (log p_T(v) - log p_S(v)), p = softmax(logits / tau),
// times tau^2 (Hinton et al. 2015: gradients keep their scale across temperatures). Both
// logits [B, T, V]; the teacher's are constants (no gradient), both in float32. Returns a
// float32 scalar, differentiable in the student's logits.
at::Tensor distillation_kl_sum(const at::Tensor& student_logits_BTV, const at::Tensor& teacher_logits_BTV,
                               const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target = {},
                               double temperature = 1.0);

// Number of targets: sum over sequences of max(length - max(first_target, 1), 0).
int64_t count_next_token_targets(const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target = {});

}  // namespace moelab::models
