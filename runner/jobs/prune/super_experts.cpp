#include "runner/jobs/prune/super_experts.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/common/error.h"

namespace moelab::jobs {

void check_super_expert_rule(const SuperExpertRule& r) {
  if (!(r.quantile > 0 && r.quantile <= 100))
    throw InputError("--super-expert-quantile", std::to_string(r.quantile) + " is outside (0, 100] (a percentile)");
  if (!(r.factor >= 1 && std::isfinite(r.factor)))
    throw InputError("--super-expert-factor", std::to_string(r.factor) + " must be a finite number >= 1");
  if (!(r.layer_fraction > 0 && r.layer_fraction <= 1))
    throw InputError("--super-expert-layers", std::to_string(r.layer_fraction) + " is outside (0, 1]");
}

SuperExperts find_super_experts(const results::CalibrationStats& st, const SuperExpertRule& r,
                                const std::string& stats_path) {
  check_super_expert_rule(r);
  if (!st.collected.count(results::stat::kOutMax))
    throw InputError(stats_path, "has no out_max statistics (the largest expert output values super experts are "
                                 "found by): calibrate with --collect out_max");
  std::vector<double> all;
  for (const auto& l : st.layers) {
    const at::Tensor m = l.out_max_E.to(at::kDouble).contiguous();
    all.insert(all.end(), m.data_ptr<double>(), m.data_ptr<double>() + m.numel());
  }
  SuperExperts out;
  if (all.empty()) return out;
  std::vector<double> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  // Linear interpolation between order statistics, as torch.quantile.
  const double pos = r.quantile / 100.0 * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(sorted.size() - 1, lo + 1);
  const double q = sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
  out.threshold = std::max(q, sorted.back() / r.factor);
  const size_t searched = size_t(std::floor(r.layer_fraction * double(st.layers.size())));
  for (size_t i = 0; i < searched; ++i) {
    const auto& l = st.layers[i];
    const at::Tensor m = l.out_max_E.to(at::kDouble).contiguous();
    for (int64_t e = 0; e < m.numel(); ++e)
      if (m.data_ptr<double>()[e] > out.threshold) out.experts[l.layer].push_back(e);
  }
  return out;
}

std::string describe(const SuperExperts& found, const SuperExpertRule& r) {
  std::ostringstream s;
  s << "super experts: out_max > " << found.threshold << " = max(q" << r.quantile << ", max/" << r.factor
    << "), first " << r.layer_fraction * 100 << "% of MoE layers";
  return s.str();
}

}  // namespace moelab::jobs
