// Shared by the criteria: a layer's statistics or expert weights, with a clear error
// (naming the criterion) when the input lacks what it needs.
#pragma once

#include <string>

#include "criteria/criterion.h"

namespace moelab::criteria {

// The statistics of MoE layer `moe_index`; throws InputError if `in.stats` is null or
// lacks `group` (the message says how to collect it).
const results::LayerStats& layer_stats(const ScoreInputs& in, int64_t moe_index, const std::string& group,
                                       const std::string& criterion);

// sum_E / tokens_E (float64 [E]), 0 for an expert that received no token: the mean
// over routed tokens that MAN, MSAN, REAP and the family's b = 1 members take.
at::Tensor per_routed_token(const at::Tensor& sum_E, const at::Tensor& tokens_E, double power = 1.0);

// The token-id bitmap [E, ceil(V/8)] uint8 of MoE layer `moe_index`, checked against the
// file's vocab_size (InputError naming the criterion otherwise).
at::Tensor token_bitmap(const ScoreInputs& in, int64_t moe_index, const std::string& criterion);

// The routed experts of decoder layer `layer` of `model` (`which` names it in errors),
// all in this process; throws InputError naming the criterion otherwise.
const models::ExpertWeights& layer_experts(const models::MoeModel* model, int64_t layer, const std::string& criterion,
                                           const std::string& which = "model");

}  // namespace moelab::criteria
