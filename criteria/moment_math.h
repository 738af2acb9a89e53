// Two computations several criteria share (float64 in, float64 out).
#pragma once

#include <ATen/ATen.h>

namespace moelab::criteria {

// From a Gram matrix G [E, E] of E vectors: for each j, the sum over k != j of
// cos(v_j, v_k) = G_jk / sqrt(G_jj G_kk); a cosine with a zero vector counts 0.
// (EAS, EGS, EWS.)
at::Tensor cosine_sums(const at::Tensor& gram_EE);

// Per row, the sum over channels of log(max(std_c, floor)), std_c the population
// standard deviation from the mean and the mean of squares [E, C]. (EAE, EGE.)
at::Tensor sum_log_std(const at::Tensor& mean_EC, const at::Tensor& mean_sq_EC, double floor);

}  // namespace moelab::criteria
