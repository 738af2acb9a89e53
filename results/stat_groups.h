// The statistic groups calibrate can collect (results/calibration_stats.h, stat::k*), each
// with what the rest of moelab needs to know of it, in one table (as criteria/criteria_list.h
// is for criteria): a new group is its datasets in stats_file.cpp, its collector, and one
// row here.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace moelab::results {

// The groups of statistics a criterion can need; calibrate collects the union.
namespace stat {
inline const std::string kUsage = "usage";                // tokens_E, gate_sum_E
inline const std::string kActNorms = "act_norms";         // act_norm_sum_E, act_norm_sq_sum_E
inline const std::string kOutNorms = "out_norms";         // out_norm_sum_E, gate_out_norm_sum_E
inline const std::string kCoactivation = "coactivation";  // coactivation_EE
inline const std::string kTokenIds = "token_ids";         // token_bitmap_EW
inline const std::string kActMoments = "act_moments";     // act_sum_EF, act_sq_sum_EF
inline const std::string kHiddenChange = "hidden_change"; // easyep_sum_E
inline const std::string kActOutliers = "act_outliers";   // act_outliers_E (second pass; needs act_moments)
inline const std::string kGradients = "gradients";        // grad_* (backward of the next-token loss)
inline const std::string kNaee = "naee";                  // naee_subsets_SE, naee_loss_S (dense pass)
inline const std::string kDenseOutputs = "dense_outputs"; // dense_out_sum_ED (dense pass; expert merging)
inline const std::string kGateRatios = "gate_ratios";     // gate_ratio_hist_B (NAEE dynamic skipping)
inline const std::string kPowerSums = "power_sums";       // power_sum_EVXX (the unified criteria family)
inline const std::string kOutMoments = "out_moments";     // out_sum_ED, out_sq_sum_ED (MoNE's novices)
inline const std::string kOutMax = "out_max";             // out_max_E (super experts)
}  // namespace stat

// Exponents for which power_sums holds sum g^a ||v||^p unless calibrate is told others
// (--power-exponents): every a, p in {0, 1, 2}.
inline const std::vector<double>& default_power_exponents() {
  static const std::vector<double> x = {0, 1, 2};
  return x;
}

// Bins of gate_ratio_hist_B over [0, 1]: bin b holds ratios in [b / B, (b + 1) / B)
// (a ratio of exactly 1 goes to the last bin). A median read from it is within half a
// bin (5e-4) of the exact median.
inline constexpr int64_t kGateRatioBins = 1000;

// The sizes a group's per-layer sums depend on: E routed experts, F expert intermediate
// size, D hidden size, V vocabulary.
struct StatSizes {
  int64_t E = 0, F = 0, D = 0, V = 0;
};

struct StatGroup {
  std::string name;  // stat::k*
  // When calibrate collects it without --criteria / --collect naming it: kWhenNeeded if a
  // criterion needs it (the default set is every criterion's needs), kOnRequest only when
  // asked for (costly: a backward pass, a dense pass per subset), kAlways (cheap, read by
  // a whole family of criteria or by prune).
  enum class Default { kWhenNeeded, kOnRequest, kAlways } by_default = Default::kWhenNeeded;
  // Why it needs the whole model in one pass (not layer by layer, not resumable from a
  // calibration checkpoint), or empty when it is a running sum of one layer-local pass.
  std::string whole_model_only;
  // Another group it is computed from (act_outliers: act_moments' thresholds), or empty.
  std::string requires_group;
  // Bytes of one MoE layer's sums: while collecting (in_file = false) or in the HDF5 file
  // (the token bitmap packed to bits, no outlier thresholds).
  int64_t (*layer_bytes)(const StatSizes& s, bool in_file) = nullptr;
};

// Every group, in the fixed order of the HDF5 file and of `calibrate --help`.
const std::vector<StatGroup>& stat_groups();
// The row of `name`; nullptr when no group has that name.
const StatGroup* find_stat_group(const std::string& name);
// The names of every group, in table order.
const std::vector<std::string>& all_stat_groups();
// `groups` with the groups they require added (act_outliers brings act_moments).
std::set<std::string> with_required_groups(std::set<std::string> groups);
// The first of `groups` (table order) that needs the whole model in one pass, or nullptr.
const StatGroup* first_whole_model_group(const std::set<std::string>& groups);
// `groups` less every group that needs the whole model in one pass (the default set of a
// layer-by-layer or resumable calibration).
std::set<std::string> without_whole_model_groups(std::set<std::string> groups);
// InputError(`option`, "unknown statistic group \"x\" (usage, act_norms, ...)") unless `name`
// is a group of the table.
void check_stat_group_name(const std::string& name, const std::string& option);

}  // namespace moelab::results
