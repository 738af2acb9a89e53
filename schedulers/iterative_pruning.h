// The iterative procedure of MC-Suite ("Finding Fantastic Experts in MoEs", arXiv
// 2504.05586): drop one expert per layer per round, re-collecting the criterion's
// statistics on the pruned model every round, until each layer reaches its target
// count (the same targets as the one-shot uniform plan: round(r_l * E_l) drops).
//
// Each round: calibration pass on the current model -> the criterion's scores ->
// in every layer still above its target, the lowest (Min) or highest (Max) scoring
// expert goes (ties: lower id). The result is a plan on the ORIGINAL checkpoint's
// expert ids (dropping never changes the surviving experts' weights, so applying it
// to the original gives the same model) with each round's drops recorded.
//
// Ranks: the model must hold every expert on every rank (load_model, not expert
// parallel): calibration batches are spread over ranks (data parallel) and the
// statistics all-reduced; re-placing experts across ranks after each round is not
// implemented.
#pragma once

#include "cluster/communicator.h"
#include "jobs/calibration_data.h"
#include "jobs/collect_statistics.h"
#include "jobs/pruning_plan.h"

namespace moelab::schedulers {

// Prunes `model` in place round by round and returns the plan (procedure "iterative").
jobs::PruningPlan prune_iteratively(models::MoeModel& model, cluster::Communicator& comm,
                                    const jobs::CalibrationSet& set, const jobs::PlanOptions& opts,
                                    const jobs::CollectOptions& collect);

}  // namespace moelab::schedulers
