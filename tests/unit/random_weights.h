// Random routed-expert weights for unit tests (standard normal router, small experts).
#pragma once

#include "core/models/moe_model.h"

namespace moelab::test {

inline models::ExpertWeights random_experts(int64_t E, int64_t D, int64_t F) {
  models::ExpertWeights w;
  w.router_ED = at::randn({E, D});
  w.gate_up_EFD = at::randn({E, 2 * F, D}) * 0.2;
  w.down_EDF = at::randn({E, D, F}) * 0.2;
  for (int64_t e = 0; e < E; ++e) w.original_ids.push_back(e);
  return w;
}

}  // namespace moelab::test
