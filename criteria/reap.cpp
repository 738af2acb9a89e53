// REAP, router-weighted expert activation pruning (Lasby et al., Cerebras 2025,
// arXiv 2510.13999): S_j = mean over the tokens routed to j of g_j(x) ||f_j(x)||_2,
// f_j the expert's output before gating, g_j the gate weight as the model applies it.
// Reading: the mean over routed tokens (REAP's observer keeps a count-weighted running
// mean); an expert that received no token scores 0. Prune the lowest (Min-REAP).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Reap : public Criterion {
 public:
  std::string name() const override { return "REAP"; }
  std::string description() const override { return "mean over routed tokens of gate x ||expert output||"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kOutNorms}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kOutNorms, name());
    return per_routed_token(s.gate_out_norm_sum_E, s.tokens_E);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_reap() { return std::make_unique<Reap>(); }

}  // namespace moelab::criteria
