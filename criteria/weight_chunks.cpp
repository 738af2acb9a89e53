#include "criteria/weight_chunks.h"

#include <algorithm>

namespace moelab::criteria {

void for_each_f64_chunk(const at::Tensor& t_E, const std::function<void(const at::Tensor& x_EC)>& fn) {
  const int64_t E = t_E.size(0);
  at::Tensor flat = t_E.reshape({E, -1});
  const int64_t n = flat.size(1);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 25) / std::max<int64_t>(E, 1));  // ~256 MiB of f64
  for (int64_t c = 0; c < n; c += chunk) fn(flat.narrow(1, c, std::min(chunk, n - c)).to(at::kDouble));
}

}  // namespace moelab::criteria
