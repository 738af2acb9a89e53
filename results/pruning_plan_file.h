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

#include "core/common/enum_words.h"

namespace moelab::results {

// Min-X drops the experts with the lowest scores, Max-X the highest.
enum class PruneDirection { kMin, kMax };
inline constexpr EnumWords<PruneDirection, 2> kPruneDirectionWords = {
    {{PruneDirection::kMin, "min"}, {PruneDirection::kMax, "max"}}};
// uniform: each layer drops its ratio of its experts; global: the ratio of all experts, in
// score order over every layer.
enum class PruneScope { kUniform, kGlobal };
inline constexpr EnumWords<PruneScope, 2> kPruneScopeWords = {{{PruneScope::kUniform, "uniform"}, {PruneScope::kGlobal, "global"}}};
// How the experts to drop are chosen (a sweep's `procedures`, `moelab prune --procedure`):
// one-shot from one set of scores; searched: one-shot with per-layer counts searched on
// held-out text (prune --search-budget); iterative: one expert per layer per round,
// statistics re-collected; lottery: iterative with fine-tuning between rounds (MoE Lottery).
enum class Procedure { kOneShot, kSearched, kIterative, kLottery };
inline constexpr EnumWords<Procedure, 4> kProcedureWords = {{{Procedure::kOneShot, "one-shot"},
                                                             {Procedure::kSearched, "searched"},
                                                             {Procedure::kIterative, "iterative"},
                                                             {Procedure::kLottery, "lottery"}}};
inline const char* to_string(PruneDirection direction) { return enum_word(kPruneDirectionWords, direction); }
inline const char* to_string(PruneScope scope) { return enum_word(kPruneScopeWords, scope); }
inline const char* to_string(Procedure procedure) { return enum_word(kProcedureWords, procedure); }
inline std::optional<PruneDirection> parse_prune_direction(const std::string& name) {
  return parse_enum_word(kPruneDirectionWords, name);
}
inline std::optional<PruneScope> parse_prune_scope(const std::string& name) { return parse_enum_word(kPruneScopeWords, name); }
inline std::optional<Procedure> parse_procedure(const std::string& name) { return parse_enum_word(kProcedureWords, name); }
// One-shot and searched choose the plan from one set of scores; the iterative procedures
// re-collect statistics round by round on the model being pruned.
inline bool chosen_from_scores(Procedure p) { return p == Procedure::kOneShot || p == Procedure::kSearched; }

struct LayerPlan {
  int64_t num_experts = 0;           // before pruning
  std::vector<int64_t> keep, drop;   // sorted expert ids
};

struct PruningPlan {
  // procedure: to_string(Procedure) of the procedure that chose the plan; "manual" when a
  // plan file without one was given by hand (provenance only: nothing branches on it).
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
