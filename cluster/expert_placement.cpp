#include "cluster/expert_placement.h"

namespace moelab::cluster {

int ExpertPlacement::owner(int64_t num_experts, int64_t expert) const {
  // Largest r with first(r) <= expert.
  int r = static_cast<int>((expert * size_) / num_experts);
  while (r + 1 < size_ && first(num_experts, r + 1) <= expert) ++r;
  while (r > 0 && first(num_experts, r) > expert) --r;
  return r;
}

}  // namespace moelab::cluster
