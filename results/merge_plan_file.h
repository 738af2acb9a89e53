// A merge plan as a saved artefact: which experts of each MoE layer are merged together,
// and with which weights; the one reader and writer (`moelab merge` writes and applies
// plans). How a plan is chosen from statistics (HC-SMoE, REAM) is
// runner/jobs/prune/merge_plan.h.
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
// Torch-free (moelab_records).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moelab::results {

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

void save_merge_plan(const MergePlan& plan, const std::string& path);  // atomically
MergePlan load_merge_plan(const std::string& path);                     // InputError naming the file

}  // namespace moelab::results
