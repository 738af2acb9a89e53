// Removing experts from a loaded model: the expert's weights and its router row go;
// the top-k stays k and renormalises over the survivors exactly as the family's own
// router does (nothing else in the model changes).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "core/models/moe_model.h"

namespace moelab::models {

// layer -> expert rows to drop (indices into the layer's current experts).
using ExpertDrops = std::map<int64_t, std::vector<int64_t>>;

// Grouped routing (DeepSeek n_group > 1) is kept when every group of every layer keeps
// the same number of experts; otherwise the model is left with n_group = topk_group = 1
// (routing over all experts, with a warning): the stock config has one group size.
// Throws InputError for a layer that does not exist or is dense, an expert index out
// of range or repeated, or a layer left with fewer than k experts.
void remove_experts(MoeModel& model, const ExpertDrops& drops);

}  // namespace moelab::models
