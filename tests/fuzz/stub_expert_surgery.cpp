// For fuzz_pruning_plan: pruning_plan.cpp's apply_plan calls the model surgery, which
// would pull in the whole model runtime (every family, attention, ...). The fuzz
// target only reads and writes plans, so the surgery is a stand-in that must never run.
#include <stdexcept>

#include "models/expert_surgery.h"

namespace moelab::models {

void remove_experts(MoeModel&, const ExpertDrops&) {
  throw std::logic_error("fuzz stand-in: remove_experts is not part of plan parsing");
}

}  // namespace moelab::models
