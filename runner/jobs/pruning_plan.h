// A pruning plan: which experts each MoE layer keeps, and why. The saved artefact
// between scores and the pruned checkpoint (scores -> plan -> pruned checkpoint).
//
// JSON (plan_version 1), expert ids are the indices of the experts in the checkpoint
// the plan applies to (0-based, per layer):
//   {"plan_version": 1, "model": "...", "architecture": "MixtralForCausalLM",
//    "criterion": "EAN", "direction": "min", "ratio": 0.5, "scope": "uniform",
//    "procedure": "one-shot", "scores": "scores.json", "experts_per_token": 2,
//    "layer_ratios": {"3": 0.25},
//    "layers": {"0": {"num_experts": 8, "keep": [0, 2, 5, 7], "drop": [1, 3, 4, 6]}, ...},
//    "rounds": [{"0": [3], "1": [6]}, ...],        (iterative procedures: drops per round)
//    "protected": {"0": [5]}, "protect_rule": "..."}  (experts never dropped, and why)
//
// Selection (Min-X drops the lowest scores, Max-X the highest; ties: lower expert id
// first, then lower layer):
//   uniform: layer l drops round(r_l * E_l) experts, r_l its --layer-ratio or the ratio;
//   global:  round(r * sum_l E_l) experts over all layers in score order, skipping any
//            whose layer would fall below top-k experts (MC-Suite found global ratios
//            create bottleneck layers; the floor keeps every layer routable).
// Protected experts (super experts, jobs/super_experts.h) are never dropped: a uniform
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

#include "criteria/scores_file.h"
#include "models/moe_model.h"

namespace moelab::jobs {

struct LayerPlan {
  int64_t num_experts = 0;           // before pruning
  std::vector<int64_t> keep, drop;   // sorted expert ids
};

struct PruningPlan {
  std::string model, architecture, criterion, direction = "min", scope = "uniform", procedure = "one-shot", scores;
  double ratio = 0;
  std::map<int64_t, double> layer_ratios;
  int64_t experts_per_token = 0;            // top-k of the pruned model
  std::map<int64_t, LayerPlan> layers;      // every MoE layer, by decoder index
  std::vector<std::map<int64_t, std::vector<int64_t>>> rounds;  // iterative: drops per round
  std::map<int64_t, std::vector<int64_t>> protected_experts;     // never dropped, by decoder layer
  std::string protect_rule;                                      // how they were chosen
  // Searched per-layer budgets (jobs/budget_search.h): layer_ratios hold the allocation;
  // "search" in the JSON: budget, seed, evaluations, fitness of the allocation and of the
  // uniform one (mean KL to the unpruned model per held-out target token), targets.
  struct Search {
    int64_t budget = 0, evaluations = 0, targets = 0;
    uint64_t seed = 0;
    double fitness = 0, uniform_fitness = 0;
    std::string data;  // the held-out data (files)
  };
  std::optional<Search> search;
  std::string substitute;  // "novices": the dropped experts became MoNE novices (jobs/novice_substitution.h)
};

struct PlanOptions {
  std::string criterion, direction = "min", scope = "uniform";
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
std::vector<int64_t> drop_order(const std::vector<double>& scores, const std::string& direction,
                                const std::vector<int64_t>& protect = {});

// Experts each MoE layer drops under the options (uniform scope), before choosing which.
std::map<int64_t, int64_t> drop_counts(const PlanOptions& opts, const models::MoeModel& model);

// The plan for `model` from one criterion's scores (one per expert of every MoE layer).
PruningPlan plan_from_scores(const models::MoeModel& model, const criteria::CriterionScores& scores,
                             const PlanOptions& opts, const std::string& scores_path);

// The plan must fit the model: same architecture, MoE layers and expert counts; every
// layer keeps at least one expert and, unless the plan reduces it, at least top-k.
// InputError naming `plan_path` otherwise.
void check_plan(const PruningPlan& plan, const models::MoeModel& model, const std::string& plan_path);

// Removes the plan's experts (after check_plan) and sets the plan's top-k.
void apply_plan(models::MoeModel& model, const PruningPlan& plan, const std::string& plan_path);

void save_plan(const PruningPlan& plan, const std::string& path);  // atomically
PruningPlan load_plan(const std::string& path);                     // InputError naming the file

}  // namespace moelab::jobs
