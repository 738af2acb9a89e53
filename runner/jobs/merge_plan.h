// A merge plan: which experts of each MoE layer are merged together, and with which
// weights. The saved artefact between calibration statistics and the merged checkpoint
// (stats -> merge plan -> merged checkpoint), as pruning_plan.h is for dropping.
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
// JSON (merge_plan_version 1), expert ids are indices into the checkpoint the plan
// applies to; groups are listed by their smallest member, members ascending, and the
// merged layer's expert g is group g:
//   {"merge_plan_version": 1, "model": "...", "architecture": "MixtralForCausalLM",
//    "stats": "stats.h5", "ratio": 0.5, "method": "hc-smoe", "similarity": "cosine", "linkage": "average",
//    "weighting": "usage_frequency", "router_merge": "avg", "experts_per_token": 2,
//    (method "ream": "linkage": "nearest_reap_centroid", "weighting": "reap_saliency")
//    "layers": {"0": {"num_experts": 8, "groups": [[0, 3], [1], ...],
//                     "weights": [[0.7, 0.3], [1.0], ...], "dominant": [0, 1, ...]}, ...}}
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/expert_merging.h"
#include "models/moe_model.h"
#include "results/calibration_stats.h"

namespace moelab::jobs {

struct LayerMerge {
  int64_t num_experts = 0;                   // before merging
  std::vector<std::vector<int64_t>> groups;  // expert ids, ascending; groups by smallest id
  std::vector<std::vector<double>> weights;  // per group, per member; each sums to 1
  std::vector<int64_t> dominant;             // per group, one of its members
};

struct MergePlan {
  std::string model, architecture, stats;
  std::string method = "hc-smoe";  // hc-smoe | ream (grouping and weighting, above and ream_grouping.h)
  double ratio = 0;
  std::string router_merge = "avg";  // avg | dominant
  int64_t experts_per_token = 0;
  std::map<int64_t, LayerMerge> layers;  // every MoE layer, by decoder index
};

struct MergeOptions {
  double ratio = 0.5;                // fraction of each layer's experts merged away, in [0, 1)
  // hc-smoe: average-linkage clustering, usage-frequency weights (above);
  // ream: REAP-salient centroids, REAP-weighted (jobs/ream_grouping.h; needs out_norms too).
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

void save_merge_plan(const MergePlan& plan, const std::string& path);  // atomically
MergePlan load_merge_plan(const std::string& path);                     // InputError naming the file

}  // namespace moelab::jobs
