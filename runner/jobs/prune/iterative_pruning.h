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
// MoE Lottery Subnetworks (same paper): the iterative procedure with task-agnostic
// next-token fine-tuning after each round's drops, on general text; the token budget
// starts at `start_tokens` (the paper: about 0.2M) and doubles every round; AdamW with
// a cosine schedule, the optimizer state reset every round (a fresh optimizer per
// round); steps per round = ceil(budget / (batch_size * seq_len)).
//
// Ranks: the model must hold every expert on every rank (load_model, not expert
// parallel): calibration batches are spread over ranks (data parallel) and the
// statistics all-reduced; re-placing experts across ranks after each round is not
// implemented.
#pragma once

#include "cluster/communicator.h"
#include "runner/jobs/calibrate/collect_statistics.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/prune/pruning_plan.h"
#include "runner/jobs/train/finetune.h"

namespace moelab::jobs {

struct LotteryOptions {
  bool enabled = false;
  int64_t start_tokens = 200000;            // fine-tuning tokens after round 1; doubles each round
  int64_t seq_len = 512;                    // tokens per fine-tuning example (for the step count)
  jobs::FinetuneOptions finetune;           // lr, batch size, params... (steps set per round)
  std::vector<jobs::TrainingExample> data;  // general text
};

// Prunes `model` in place round by round and returns the plan (procedure "iterative",
// or "lottery" with fine-tuning between rounds: the plan then records the drops, but
// the fine-tuned weights live only in the returned model).
jobs::PruningPlan prune_iteratively(models::MoeModel& model, cluster::Communicator& comm,
                                    const jobs::CalibrationSet& set, const jobs::PlanOptions& opts,
                                    const jobs::CollectOptions& collect, const LotteryOptions& lottery = {});

}  // namespace moelab::jobs
