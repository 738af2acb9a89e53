// Scoring: one criterion's scores over a model's MoE layers, and the check that statistics
// describe the model they score. The scores file itself (what `moelab score` writes) is
// results/scores_file.h.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "criteria/criterion.h"
#include "results/scores_file.h"

namespace moelab::criteria {

// Scores of one criterion for the given MoE layers (decoder indices; `i`-th entry is
// MoE layer #i of the statistics). Throws InputError for missing inputs.
results::CriterionScores score_criterion(const Criterion& c, const ScoreInputs& in, const std::vector<int64_t>& layers);

// The statistics must describe this model (its config): same MoE layers, expert counts
// and architecture; InputError naming `stats_path` otherwise.
void check_stats_match(const results::CalibrationStats& st, const hf::ModelConfig& c, const std::string& stats_path);

}  // namespace moelab::criteria
