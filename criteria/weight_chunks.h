// Walks an expert-stacked weight tensor [E, ...] as [E, -1] in column chunks of about
// 256 MiB of float64, so that weight criteria work in float64 without a float64 copy
// of a whole layer.
#pragma once

#include <ATen/ATen.h>

#include <functional>

namespace moelab::criteria {

// fn receives each chunk [E, c] in float64 (on the weights' device).
void for_each_f64_chunk(const at::Tensor& t_E, const std::function<void(const at::Tensor& x_EC)>& fn);

}  // namespace moelab::criteria
