// Rank agreement between criteria: Kendall's tau-b between two criteria's scores of the
// experts of one MoE layer, averaged over the layers where both are defined.
//
// tau-b = (n_c - n_d) / sqrt((n_0 - n_1) (n_0 - n_2)), n_0 = n (n - 1) / 2 pairs of
// experts, n_c / n_d the concordant / discordant pairs, n_1 / n_2 the pairs tied in the
// first / second scores (Kendall, "The treatment of ties in ranking problems",
// Biometrika 33, 1945; the definition scipy.stats.kendalltau uses by default). A layer
// where either criterion scores every expert the same (denominator 0) or holds a NaN
// score is left out of the mean. Scores are compared as stored (the Min- direction
// drops low scores, Max- high ones: tau between Min-X and Max-Y is minus this value).
#pragma once

#include <vector>

#include "results/report/report_table.h"

namespace moelab::results::report {

// tau-b of two equally long score vectors; NaN when undefined.
double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y);

// One table per finished scoring job with >= 2 criteria: criteria x criteria, the mean
// over MoE layers of tau-b (diagonal 1). Criteria in the sweep's order, then the others
// of the scores file alphabetically.
std::vector<Table> build_kendall_tables(const SweepResults& r);

// The criteria of a score set in table order (shared with the plots).
std::vector<std::string> ordered_criteria(const SweepResults& r, const ScoreSet& s);

// "c4, seed 0" / "weights only, seed 0" (with the model when the sweep has several).
std::string score_set_name(const SweepResults& r, const ScoreSet& s);
// File-name stem for a score set: "c4-seed0".
std::string score_set_stem(const SweepResults& r, const ScoreSet& s);

}  // namespace moelab::results::report
