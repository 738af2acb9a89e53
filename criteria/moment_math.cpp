#include "criteria/moment_math.h"

namespace moelab::criteria {

at::Tensor cosine_sums(const at::Tensor& gram_EE) {
  at::Tensor gram = gram_EE.to(at::kDouble);
  at::Tensor norm = gram.diagonal().clamp_min(0).sqrt();
  at::Tensor den = norm.unsqueeze(1) * norm.unsqueeze(0);
  at::Tensor cos = at::where(den > 0, gram / at::where(den > 0, den, at::ones_like(den)), at::zeros_like(gram));
  cos.fill_diagonal_(0);
  return cos.sum(1);
}

at::Tensor sum_log_std(const at::Tensor& mean_EC, const at::Tensor& mean_sq_EC, double floor) {
  at::Tensor sd = (mean_sq_EC - mean_EC * mean_EC).clamp_min(0).sqrt();
  return sd.clamp_min(floor).log().sum(1);
}

}  // namespace moelab::criteria
