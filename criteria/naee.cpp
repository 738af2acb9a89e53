// NAEE (Lu et al. 2024, "Not All Experts are Equal: Efficient Expert Pruning and
// Skipping for Mixture-of-Experts LLMs"): the subset of experts to keep that
// minimises the layer's output reconstruction error over the calibration set,
// searched at calibration time (runner/jobs/calibrate/naee_search.h: enumeration, or greedy
// elimination above a budget). NAEE picks a subset rather than scoring experts; its
// scores are built so that Min-NAEE at the calibrated ratio drops exactly that subset:
//   NAEE_j = the smallest error among the stored subsets that exclude j
// (enumeration: the best subset's dropped experts all score its error, the minimum,
// and any other expert scores more; greedy path: non-decreasing along the elimination
// order). An expert that no stored subset excludes scores 2 max(error) + 1, above
// all others. At another ratio the scores still rank experts but are not NAEE's
// optimum for it (re-run calibrate with --naee-ratio). Only Min-NAEE is meaningful.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Naee : public Criterion {
 public:
  std::string name() const override { return "NAEE"; }
  std::string description() const override {
    return "reconstruction-loss subset search (enumeration or greedy); Min drops NAEE's subset";
  }
  std::vector<std::string> needs() const override { return {results::stat::kNaee}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kNaee, name());
    at::Tensor kept_SE = s.naee_subsets_SE.to(at::kBool), loss_S = s.naee_loss_S.to(at::kDouble);
    const double ceiling = 2 * (loss_S.numel() ? loss_S.max().item<double>() : 0.0) + 1;
    // [S, E]: the subset's error where it excludes the expert, the ceiling elsewhere.
    at::Tensor err_SE = at::where(kept_SE, at::full_like(kept_SE, ceiling, at::kDouble),
                                  loss_S.unsqueeze(1).expand_as(kept_SE));
    return std::get<0>(err_SE.min(0));
  }
};

}  // namespace

std::unique_ptr<Criterion> make_naee() { return std::make_unique<Naee>(); }

}  // namespace moelab::criteria
