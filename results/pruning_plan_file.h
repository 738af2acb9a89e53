// A pruning plan as a saved artefact: which experts each MoE layer keeps, and why; the one
// reader and writer (`moelab prune` writes and applies plans, the iterative procedures
// record their rounds, the fuzz targets read them). How a plan is chosen from scores, and
// applied to a model, is runner/jobs/prune/pruning_plan.h.
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
// Torch-free (moelab_records).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moelab::results {

// Min-X drops the experts with the lowest scores, Max-X the highest.
enum class PruneDirection { kMin, kMax };
// uniform: each layer drops its ratio of its experts; global: the ratio of all experts, in
// score order over every layer.
enum class PruneScope { kUniform, kGlobal };
const char* to_string(PruneDirection direction);  // "min" | "max"
const char* to_string(PruneScope scope);          // "uniform" | "global"
std::optional<PruneDirection> parse_prune_direction(const std::string& name);
std::optional<PruneScope> parse_prune_scope(const std::string& name);

struct LayerPlan {
  int64_t num_experts = 0;           // before pruning
  std::vector<int64_t> keep, drop;   // sorted expert ids
};

struct PruningPlan {
  std::string model, architecture, criterion, procedure = "one-shot", scores;
  PruneDirection direction = PruneDirection::kMin;
  PruneScope scope = PruneScope::kUniform;
  double ratio = 0;
  std::map<int64_t, double> layer_ratios;
  int64_t experts_per_token = 0;            // top-k of the pruned model
  std::map<int64_t, LayerPlan> layers;      // every MoE layer, by decoder index
  std::vector<std::map<int64_t, std::vector<int64_t>>> rounds;  // iterative: drops per round
  std::map<int64_t, std::vector<int64_t>> protected_experts;     // never dropped, by decoder layer
  std::string protect_rule;                                      // how they were chosen
  // Searched per-layer budgets (runner/jobs/prune/budget_search.h): layer_ratios hold the allocation;
  // "search" in the JSON: budget, seed, evaluations, fitness of the allocation and of the
  // uniform one (mean KL to the unpruned model per held-out target token), targets.
  struct Search {
    int64_t budget = 0, evaluations = 0, targets = 0;
    uint64_t seed = 0;
    double fitness = 0, uniform_fitness = 0;
    std::string data;  // the held-out data (files)
  };
  std::optional<Search> search;
  std::string substitute;  // "novices": the dropped experts became MoNE novices (runner/jobs/prune/novice_substitution.h)
};

void save_plan(const PruningPlan& plan, const std::string& path);  // atomically
PruningPlan load_plan(const std::string& path);                     // InputError naming the file

}  // namespace moelab::results
