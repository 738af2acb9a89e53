// Super experts (Su et al., "Unveiling Super Experts in Mixture-of-Experts Large
// Language Models", arXiv 2507.23279): the few experts whose down-projection output
// reaches extreme values, on which the model's attention sinks depend; dropping one
// costs far more than its routing share suggests. Identified as REAP does
// (CerebrasResearch/reap, get_super_expert_indices, `--preserve-super-experts`):
//   m_j = out_max_E[j] over every MoE layer's experts (the statistic `out_max`);
//   threshold = max(quantile(all m, q / 100), max(all m) / factor), q = 99.5, factor = 10;
//   super = m_j > threshold, in the first floor(layer_fraction * L) MoE layers only
//   (layer_fraction = 0.75; REAP's `preserve_outliers` takes every layer = 1.0).
// The quantile interpolates linearly between order statistics (torch.quantile's default).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "results/calibration_stats.h"

namespace moelab::jobs {

struct SuperExpertRule {
  double quantile = 99.5;       // percent, in (0, 100]
  double factor = 10;           // >= 1: a super expert reaches at least max / factor
  double layer_fraction = 0.75;  // in (0, 1]: leading share of the MoE layers searched
};

// InputError naming the option (--super-expert-quantile, -factor, -layers) when a value
// is out of range.
void check_super_expert_rule(const SuperExpertRule& rule);

struct SuperExperts {
  double threshold = 0;                            // the value m_j must exceed
  std::map<int64_t, std::vector<int64_t>> experts;  // decoder layer -> sorted expert ids
};

// From statistics with the out_max group (InputError naming `stats_path` and saying how
// to collect it otherwise).
SuperExperts find_super_experts(const results::CalibrationStats& stats, const SuperExpertRule& rule,
                                const std::string& stats_path);

// One line for plans and logs, e.g. "super experts: out_max > 41.2 = max(q99.5, max/10), first 75% of MoE layers".
std::string describe(const SuperExperts& found, const SuperExpertRule& rule);

}  // namespace moelab::jobs
