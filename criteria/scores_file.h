// Scores as a saved artefact: what `moelab score` writes and `moelab prune` reads.
//
// JSON: {"stats": path, "model": path,
//        "criteria": {"EAN": {"version": 1, "layers": {"0": [score of expert 0, ...], ...}}}}
// Layer keys are decoder-layer indices; one float64 per expert, in the layer's current
// expert order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "criteria/criterion.h"

namespace moelab::criteria {

struct CriterionScores {
  std::string name;
  int version = 1;
  std::map<int64_t, std::vector<double>> layers;  // decoder layer -> [E]
};

struct ScoresFile {
  std::string stats, model;  // where they came from (may be empty)
  std::vector<CriterionScores> criteria;
  // Case-insensitive; throws InputError naming `path` and the criteria present.
  const CriterionScores& get(const std::string& name, const std::string& path) const;
};

// Scores of one criterion for the given MoE layers (decoder indices; `i`-th entry is
// MoE layer #i of the statistics). Throws InputError for missing inputs.
CriterionScores score_criterion(const Criterion& c, const ScoreInputs& in, const std::vector<int64_t>& layers);

// The statistics must describe this model (its config): same MoE layers, expert counts
// and architecture; InputError naming `stats_path` otherwise.
void check_stats_match(const results::CalibrationStats& st, const hf::ModelConfig& c, const std::string& stats_path);

void write_scores(const ScoresFile& scores, const std::string& path);  // atomically
ScoresFile read_scores(const std::string& path);                        // InputError naming the file

}  // namespace moelab::criteria
