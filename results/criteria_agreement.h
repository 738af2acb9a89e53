// Agreement between criteria on which experts to drop: for every pair of (criterion,
// direction) choices, per MoE layer and overall,
//   - Kendall's tau-b between their drop orders (scores as stored for Min-, negated for
//     Max-, so that tau = 1 means the same order of removal; report_kendall.h), and
//   - the top-r overlap |D_A n D_B| / r of the experts each would drop at `ratio`, with
//     r = round(ratio * E) and D chosen as `moelab prune`'s uniform plan chooses them
//     (runner/jobs/prune/pruning_plan.cpp: stable sort by drop order, ties to the lower expert id).
// Overall: tau is the mean over the layers where it is defined; the overlap is the total
// intersection over the total dropped (layers weighted by r).
// Pure data (no torch): `moelab score --agreement` prints and saves it, the report reuses it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moelab::results {

struct ChoiceScores {
  std::string label;                              // "Min-EAN"
  bool min_direction = true;                      // Min- drops the lowest scores
  std::map<int64_t, std::vector<double>> layers;  // decoder layer -> one score per expert
};

struct AgreementRow {
  std::string a, b;       // labels
  int64_t layer = -1;     // decoder layer; -1 for the overall row
  double kendall_tau = 0;  // NaN when undefined (constant scores)
  double overlap = 0;      // in [0, 1]; NaN when nothing is dropped
  int64_t dropped = 0;     // r (overall: the sum over layers)
};

// The experts `c` drops in `layer` at `ratio`, ascending ids.
std::vector<int64_t> dropped_experts(const ChoiceScores& c, int64_t layer, double ratio);

// Every unordered pair (a before b in `choices` order), per layer then overall.
// Every choice must score the same layers with the same expert counts (std::invalid_argument).
std::vector<AgreementRow> criteria_agreement(const std::vector<ChoiceScores>& choices, double ratio);

// CSV: layer,criterion_a,criterion_b,kendall_tau,top_r_overlap,dropped (layer "all" overall).
std::string agreement_csv(const std::vector<AgreementRow>& rows);
// Two matrices as plain text (overall tau, overall overlap), for the terminal.
std::string agreement_text(const std::vector<ChoiceScores>& choices, const std::vector<AgreementRow>& rows,
                           double ratio);

}  // namespace moelab::results
