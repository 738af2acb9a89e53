// Merging experts instead of dropping them (M-SMoE, Li et al., "Merge, Then Compress",
// arXiv 2310.01334; HC-SMoE, Chen et al., arXiv 2410.08589): each group of a layer's
// experts becomes one expert whose gate, up and down matrices are the weighted average
// of the group's, and the router keeps one row per group.
//
// Router row of a merged expert (RouterMerge):
//   average:  the same weighted average of the group's router rows. A token's logit for
//             the merged expert is then the average of its logits for the members (the
//             router is linear), so a group is picked about as often as its members were.
//   dominant: the row of the group's dominant expert, as M-SMoE does (it merges into the
//             most used expert and keeps that expert's routing).
// (HC-SMoE's code keeps all E router rows and maps each to its group's merged weights; a
// Hugging Face checkpoint cannot share weights between experts, so the router here keeps
// one row per group and the parameters really shrink.)
// Top-k stays k and renormalises as the family's router does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/models/moe_model.h"

namespace moelab::models {

struct ExpertGroup {
  std::vector<int64_t> members;  // indices into the layer's current experts
  std::vector<double> weights;   // one per member, >= 0, summing to 1
  int64_t dominant = 0;          // one of members: whose router row `dominant` keeps
};

// layer -> the groups, in the order of the merged layer's experts. Every expert of a
// listed layer is in exactly one group; unlisted layers are left alone.
using ExpertMerges = std::map<int64_t, std::vector<ExpertGroup>>;

enum class RouterMerge { kAverage, kDominant };

// sum_i weights[i] * xs[i] in float64 (xs alike in shape): a merged expert's tensor before
// it is rounded to a stored or compute dtype (also core/models/checkpoint_surgery.cpp's).
at::Tensor weighted_sum_f64(const std::vector<at::Tensor>& xs, const std::vector<double>& weights);

// Weighted averages computed in float64, stored in the model's dtype. The merged expert
// takes the original id (ExpertWeights::original_ids) of its dominant member. Throws
// InputError (naming `what`) for a layer that does not exist or is dense, an expert out
// of range, missing or in two groups, weights that do not match the members or do not
// sum to 1, or a layer left with fewer than top-k experts; the model is unchanged then.
void merge_experts(MoeModel& model, const ExpertMerges& merges, RouterMerge router,
                   const std::string& what = "merge plan");

}  // namespace moelab::models
