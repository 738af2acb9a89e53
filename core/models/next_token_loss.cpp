#include "core/models/next_token_loss.h"

namespace moelab::models {

int64_t count_next_token_targets(const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target) {
  int64_t n = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const int64_t first = first_target.empty() ? 1 : std::max<int64_t>(first_target[b], 1);
    n += std::max<int64_t>(lengths[b] - first, 0);
  }
  return n;
}

namespace {

// Flat indices b * T + t of the positions that predict a target.
std::vector<int64_t> target_positions(int64_t T, const std::vector<int64_t>& lengths,
                                      const std::vector<int64_t>& first_target) {
  std::vector<int64_t> positions;
  for (int64_t b = 0; b < int64_t(lengths.size()); ++b)
    for (int64_t t = first_target.empty() ? 0 : std::max<int64_t>(first_target[b], 1) - 1; t + 1 < lengths[b]; ++t)
      positions.push_back(b * T + t);
  return positions;
}

}  // namespace

at::Tensor distillation_kl_sum(const at::Tensor& student_BTV, const at::Tensor& teacher_BTV,
                               const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target,
                               double temperature) {
  const int64_t T = student_BTV.size(1), V = student_BTV.size(2);
  const std::vector<int64_t> positions = target_positions(T, lengths, first_target);
  if (positions.empty()) return student_BTV.sum().to(at::kFloat) * 0;
  const at::Tensor idx = at::tensor(positions, at::kLong).to(student_BTV.device());
  at::Tensor s = student_BTV.reshape({-1, V}).index_select(0, idx).to(at::kFloat) / temperature;
  at::Tensor t = teacher_BTV.detach().reshape({-1, V}).index_select(0, idx.to(teacher_BTV.device()))
                     .to(student_BTV.device(), at::kFloat) / temperature;
  at::Tensor log_pt = at::log_softmax(t, -1);
  at::Tensor kl = (log_pt.exp() * (log_pt - at::log_softmax(s, -1))).sum();
  return kl * (temperature * temperature);
}

at::Tensor next_token_nll_sum(const at::Tensor& logits_BTV, const at::Tensor& ids_BT,
                              const std::vector<int64_t>& lengths, const std::vector<int64_t>& first_target) {
  const int64_t T = logits_BTV.size(1), V = logits_BTV.size(2);
  std::vector<int64_t> positions = target_positions(T, lengths, first_target), targets;
  const at::Tensor ids = ids_BT.to(at::kCPU, at::kLong).contiguous();
  const auto acc = ids.accessor<int64_t, 2>();
  for (int64_t p : positions) targets.push_back(acc[p / T][p % T + 1]);
  if (positions.empty()) return logits_BTV.sum().to(at::kFloat) * 0;
  auto i64 = at::TensorOptions().dtype(at::kLong).device(logits_BTV.device());
  at::Tensor rows = logits_BTV.reshape({-1, V}).index_select(0, at::tensor(positions, i64.device(at::kCPU)).to(i64.device()));
  at::Tensor logp = at::log_softmax(rows.to(at::kFloat), -1);
  at::Tensor tgt = at::tensor(targets, i64.device(at::kCPU)).to(i64.device()).unsqueeze(1);
  return -logp.gather(1, tgt).sum();
}

}  // namespace moelab::models
