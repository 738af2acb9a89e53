// MoNE, "Replacing Redundant Experts with Lightweight Novices" (Zhang et al., arXiv
// 2507.00390; the authors' code: zxgx/mode-pd, modepd/pruning/expert_prune.py,
// expert_prune_by_mone). An expert is redundant when it is rarely used and its output
// hardly varies: then its mean output (the "novice", moelab prune --substitute novices)
// stands in for it. Prune the lowest (Min-MoNE).
//
// Reading of the authors' code:
//   MoNE (their `fusion` metric, the paper's "access frequency and output variance"):
//     S_j = r_j * || std_j ||_2,  r_j = sum of g_j(x) over all calibration tokens / number
//     of tokens (their routing score: the gate weight as the model applies it, 0 where j
//     is not routed), std_j the per-channel standard deviation of f_j(x) over the tokens
//     routed to j. Their w * (1 - w) factor (fusion_io_weight) scales every score alike
//     and is left out.
//   MoNE-fluctuation (their `output_fluctuation`): S_j = || var_j ||_2 over channels.
// The variance is the exact population variance from the sums (their running update
// approximates it batch by batch); an expert with fewer than 2 routed tokens has none.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

// Per-channel population variance of f_j over routed tokens, [E, D] float64.
at::Tensor output_variance(const results::LayerStats& s) {
  at::Tensor n = s.tokens_E.to(at::kDouble).unsqueeze(1);
  at::Tensor mean = s.out_sum_ED / n.clamp_min(1);
  at::Tensor var = (s.out_sq_sum_ED / n.clamp_min(1) - mean * mean).clamp_min(0);
  return at::where(n >= 2, var, at::zeros_like(var));
}

class Mone : public Criterion {
 public:
  std::string name() const override { return "MoNE"; }
  std::string description() const override {
    return "routing score (mean gate weight over all tokens) x ||per-channel std of the expert output||";
  }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kOutMoments}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kOutMoments, name());
    const double tokens = std::max<double>(1.0, static_cast<double>(in.stats->num_tokens));
    return s.gate_sum_E.to(at::kDouble) / tokens * output_variance(s).sqrt().norm(2, 1);
  }
};

class MoneFluctuation : public Criterion {
 public:
  std::string name() const override { return "MoNE-fluctuation"; }
  std::string description() const override { return "||per-channel variance of the expert output||_2 (MoNE's output_fluctuation)"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kOutMoments}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return output_variance(layer_stats(in, moe_index, results::stat::kOutMoments, name())).norm(2, 1);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_mone() { return std::make_unique<Mone>(); }
std::unique_ptr<Criterion> make_mone_fluctuation() { return std::make_unique<MoneFluctuation>(); }

}  // namespace moelab::criteria
