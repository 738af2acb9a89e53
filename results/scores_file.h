// Scores as a saved artefact: what `moelab score` writes and `moelab prune`, `merge`, the
// budget search and `moelab report` read, through this one reader.
//
// JSON: {"stats": path, "model": path,
//        "criteria": {"EAN": {"version": 1, "layers": {"0": [score of expert 0, ...], ...}}}}
// Layer keys are decoder-layer indices; one float64 per expert, in the layer's current
// expert order; null where a criterion has no score (NaN in memory, and NaN is written as
// null). Torch-free (moelab_records).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moelab::results {

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

void write_scores(const ScoresFile& scores, const std::string& path);  // atomically
// InputError naming the file and the field ("criteria.EAN.layers.3[7]: expected a number").
ScoresFile read_scores(const std::string& path);

}  // namespace moelab::results
