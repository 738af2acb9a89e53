// Soft frequency (gate-weighted usage), the baseline of the expert-pruning literature
// (e.g. the frequency baselines in REAP, Lasby et al. 2025, and in Liu et al.,
// arXiv 2606.15716, member (a,p,b) = (1,0,0)): sum over routed tokens of the gate
// weight g_j(x) as the model applies it (renormalised over the top-k when the
// router renormalises).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class SoftFrequency : public Criterion {
 public:
  std::string name() const override { return "SoftFrequency"; }
  std::string description() const override { return "gate-weighted usage: sum of gate weights over routed tokens"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kUsage, name()).gate_sum_E.clone();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_soft_frequency() { return std::make_unique<SoftFrequency>(); }

}  // namespace moelab::criteria
