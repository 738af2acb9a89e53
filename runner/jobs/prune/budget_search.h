// Searched per-layer budgets (EvoESAP, arXiv 2603.06003, and the non-uniform allocation
// line of work): for a total ratio and one criterion's scores, how many experts each MoE
// layer drops. Within a layer the criterion decides which (its order, as plan_from_scores);
// the search decides how many, keeping the total number dropped and every layer at or
// above top-k experts (1 with reduce_top_k).
//
// Fitness (lower is better): the mean over the held-out tokens' next-token targets of
// KL(p_full || p_pruned) (models::distillation_kl_sum at temperature 1), p_full from the
// unpruned model's logits, computed once and kept ([B, T, V] per batch), p_pruned the
// candidate's (the model with those experts removed, in this process).
//
// Search: a (1+1) evolution strategy from the uniform allocation. A mutation moves 1 to
// `max_move` drops from one layer to another (both chosen uniformly among the layers that
// can give and take); the candidate replaces the incumbent when its fitness is lower. The
// incumbent is never worse than the uniform start. Every draw comes from one seeded
// generator, so a seed gives one trajectory; `budget` bounds the distinct allocations
// evaluated (the uniform one included; a repeated candidate is looked up, not re-run). The
// search stops earlier when 64 x budget draws in a row find nothing new (every neighbour
// of the incumbent has been evaluated: it is a local optimum of the moves).
// Resumable: every evaluation is appended to `state_path` (JSON lines) as it finishes; a
// run with the same settings replays the trajectory, taking the recorded fitness of
// allocations already evaluated, and continues where the last run stopped.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/models/moe_model.h"
#include "results/scores_file.h"
#include "runner/jobs/prune/pruning_plan.h"

namespace moelab::jobs {

struct BudgetSearchOptions {
  int64_t budget = 32;    // distinct allocations evaluated, >= 1
  uint64_t seed = 0;
  int64_t max_move = 2;   // drops moved by one mutation, >= 1
  int64_t batch_size = 8;
  std::string state_path;  // "" = not resumable
};

struct BudgetSearchResult {
  std::map<int64_t, int64_t> drops;          // by decoder layer: experts dropped
  double fitness = 0, uniform_fitness = 0;  // mean KL per target token (nats)
  int64_t evaluations = 0, resumed = 0;      // distinct allocations evaluated; of them read from the state
  int64_t targets = 0;                       // held-out target tokens
};

// InputError naming the option for a budget < 1, max_move < 1, no held-out sequence of
// two tokens or more, or a state file written with other settings.
BudgetSearchResult search_layer_budgets(const models::MoeModel& model, const results::CriterionScores& scores,
                                        const PlanOptions& plan, const std::vector<std::vector<int64_t>>& held_out,
                                        const BudgetSearchOptions& opts);

}  // namespace moelab::jobs
