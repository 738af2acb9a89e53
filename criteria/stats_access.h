// Shared by the inference-based criteria: the layer's statistics, with a clear error
// when the file lacks a group the criterion needs.
#pragma once

#include <string>

#include "criteria/criterion.h"

namespace moelab::criteria {

// The statistics of MoE layer `moe_index`; throws InputError if `in.stats` is null or
// lacks `group` (the message says how to collect it).
const results::LayerStats& layer_stats(const ScoreInputs& in, int64_t moe_index, const std::string& group,
                                       const std::string& criterion);

}  // namespace moelab::criteria
