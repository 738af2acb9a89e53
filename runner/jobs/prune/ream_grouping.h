// REAM-style grouping and weights for expert merging (Jha et al., "REAM: Merging
// Improves Pruning of Experts in LLMs", arXiv 2604.04356): REAP's router-weighted
// activation (REAP saliency S_j = mean over routed tokens of g_j(x) ||f_j(x)||,
// criteria/reap.cpp) chooses the experts that survive as group centroids and weighs
// the merge, so that a merged expert stays close to its most salient member
// ("pseudo-pruning").
//
// Reading implemented (the paper's own code was not available to us):
//  - centroids: the G experts with the highest saliency (ties: lower id), G the number
//    of groups (= the experts Min-REAP would keep at the same ratio);
//  - every other expert joins the centroid whose mean output over all calibration
//    tokens (statistic `dense_outputs`, as HC-SMoE) has the highest cosine similarity
//    with its own (ties: the more salient centroid); REAM's own similarity also mixes in
//    router-logit similarity and aligns neurons before averaging, which moelab does not;
//  - weights: each member's saliency over the group's total (a group whose members all
//    have saliency 0: plain average); the dominant member is the centroid.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace moelab::jobs {

struct ReamGroups {
  std::vector<std::vector<int64_t>> groups;  // ascending members; groups by smallest member
  std::vector<std::vector<double>> weights;  // per group, per member; each sums to 1
  std::vector<int64_t> centroids;            // per group
};

// features_ED: mean (or summed) expert outputs [E, D] (float64); saliency_E: REAP [E].
ReamGroups ream_groups(const at::Tensor& features_ED, const at::Tensor& saliency_E, int64_t num_groups);

}  // namespace moelab::jobs
