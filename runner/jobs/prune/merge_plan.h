// Merge plans from calibration statistics, and their groups in the form the model surgery
// takes (stats -> merge plan -> merged checkpoint), as pruning_plan.h is for dropping.
//
// Grouping (HC-SMoE, Chen et al., arXiv 2410.08589): per MoE layer, hierarchical
// agglomerative clustering of the experts with average linkage on the cosine distance
// 1 - cos(mu_i, mu_j) between their mean outputs over ALL calibration tokens
// (mu_j = dense_out_sum_ED[j] / num_tokens, statistic group `dense_outputs`), from E
// singletons down to G = E - round(ratio * E) groups. Average linkage: the distance of
// two groups is the mean distance over their pairs of members (recomputed from the
// pairwise distances at every step, not updated, so it is exact). HC-SMoE's code
// (github.com/wazenmai/HC-SMoE) has both measures: a cosine similarity matrix of these
// means (grouping_mixtral.py, `_compute_all_similarities_by_expert_outputs`) and
// Euclidean distances between them in its clustering routine (clustering.py,
// `pairwise_distances`). We use the cosine distance, which ignores the outputs' scale
// (the reading moelab documents in README.md). An expert whose mean output is zero
// has cosine 0 with every other (distance 1).
// Ties: groups are kept in the order of their smallest expert id, pairs are scanned in
// that order (first group, then second) and only a strictly smaller distance replaces
// the best pair, so among equal distances the pair with the smallest ids merges first.
//
// Weights (M-SMoE, Li et al., arXiv 2310.01334, "frequency-weighted merging"; HC-SMoE's
// `--merge freq`): each member's tokens_E (statistic group `usage`: tokens routed to it)
// divided by the group's total; a group whose members got no token is a plain average.
// Dominant expert of a group: its most used member (ties: lowest id); the router row
// kept by `--router-merge dominant`.
//
// The plan as a file (JSON, its fields): results/merge_plan_file.h.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/models/expert_merging.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "results/merge_plan_file.h"

namespace moelab::jobs {

using results::LayerMerge;
using results::MergePlan;

struct MergeOptions {
  double ratio = 0.5;                // fraction of each layer's experts merged away, in [0, 1)
  // hc-smoe: average-linkage clustering, usage-frequency weights (above);
  // ream: REAP-salient centroids, REAP-weighted (runner/jobs/prune/ream_grouping.h; needs out_norms too).
  std::string method = "hc-smoe";
  std::string router_merge = "avg";  // avg | dominant
};

models::RouterMerge parse_router_merge(const std::string& s, const std::string& what);

// Average-linkage agglomerative clustering of the rows of features_ED (float64) on the
// cosine distance, down to `num_groups` groups (ordering and ties as above).
std::vector<std::vector<int64_t>> average_linkage_groups(const at::Tensor& features_ED, int64_t num_groups);

// The plan for `model` from calibration statistics with `dense_outputs` and `usage`
// collected on it. InputError naming the option or `stats_path` otherwise (bad ratio,
// missing groups with how to collect them, statistics of a different model, a layer
// left with fewer than top-k experts).
MergePlan plan_merges(const models::MoeModel& model, const results::CalibrationStats& stats,
                      const MergeOptions& opts, const std::string& stats_path);

// The plan must fit the model (architecture, MoE layers, expert counts); InputError
// naming `plan_path` otherwise. The groups themselves are checked by merge_experts.
void check_merge_plan(const MergePlan& plan, const models::MoeModel& model, const std::string& plan_path);

// The plan's groups in the form models::merge_experts takes.
models::ExpertMerges to_expert_merges(const MergePlan& plan);


}  // namespace moelab::jobs
