// Pruning plans from scores, and applied to a model (scores -> plan -> pruned checkpoint).
//
// The plan as a file (JSON, its fields): results/pruning_plan_file.h.
//
// Selection (Min-X drops the lowest scores, Max-X the highest; ties: lower expert id
// first, then lower layer):
//   uniform: layer l drops round(r_l * E_l) experts, r_l its --layer-ratio or the ratio;
//   global:  round(r * sum_l E_l) experts over all layers in score order, skipping any
//            whose layer would fall below top-k experts (MC-Suite found global ratios
//            create bottleneck layers; the floor keeps every layer routable).
// Protected experts (super experts, runner/jobs/prune/super_experts.h) are never dropped: a uniform
// layer drops its count from the others (fewer, with a warning, when too few are
// left), the global scope passes over them.
// A layer may not keep fewer than top-k experts, unless reduce_top_k is set: then
// the pruned model's top-k becomes the smallest kept count (recorded in
// experts_per_token) for every layer, as config.json holds a single k.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/models/moe_model.h"
#include "results/pruning_plan_file.h"
#include "results/scores_file.h"

namespace moelab::jobs {

using results::LayerPlan;
using results::PruningPlan;

struct PlanOptions {
  std::string criterion;
  results::PruneDirection direction = results::PruneDirection::kMin;
  results::PruneScope scope = results::PruneScope::kUniform;
  double ratio = 0.5;
  std::map<int64_t, double> layer_ratios;  // uniform scope only
  bool reduce_top_k = false;
  std::map<int64_t, std::vector<int64_t>> protect;  // experts never dropped, by decoder layer
  std::string protect_rule;                         // recorded in the plan
};

// Checks ratios (in [0, 1)), direction, scope and layer indices against the model's
// MoE layers; InputError naming the option otherwise.
void check_plan_options(const PlanOptions& opts, const models::MoeModel& model);

// A layer's experts in the order the uniform scope drops them: by score (lowest first
// for direction "min", highest for "max"; ties: lower id first), `protect`ed ids left out.
std::vector<int64_t> drop_order(const std::vector<double>& scores, results::PruneDirection direction,
                                const std::vector<int64_t>& protect = {});

// Experts each MoE layer drops under the options (uniform scope), before choosing which.
std::map<int64_t, int64_t> drop_counts(const PlanOptions& opts, const models::MoeModel& model);

// The plan for `model` from one criterion's scores (one per expert of every MoE layer).
PruningPlan plan_from_scores(const models::MoeModel& model, const results::CriterionScores& scores,
                             const PlanOptions& opts, const std::string& scores_path);

// The plan must fit the model: same architecture, MoE layers and expert counts; every
// layer keeps at least one expert and, unless the plan reduces it, at least top-k.
// InputError naming `plan_path` otherwise.
void check_plan(const PruningPlan& plan, const models::MoeModel& model, const std::string& plan_path);

// Removes the plan's experts (after check_plan) and sets the plan's top-k.
void apply_plan(models::MoeModel& model, const PruningPlan& plan, const std::string& plan_path);


}  // namespace moelab::jobs
