// EAN, expert activation norm (MC-Suite, arXiv 2504.05586; the paper's best single
// criterion, Min-EAN): sum over the tokens routed to the expert of ||a_j(x)||_2, with
// a_j(x) = act(x W_gate^T) * (x W_up^T) the intermediate activation (width F).
// A sum, not a mean: frequent experts accumulate more (MAN is the mean, issue 16).
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Ean : public Criterion {
 public:
  std::string name() const override { return "EAN"; }
  std::string description() const override { return "activation norm: sum of ||a_j(x)|| over routed tokens"; }
  std::vector<std::string> needs() const override { return {results::stat::kActNorms}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kActNorms, name()).act_norm_sum_E.clone();
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ean() { return std::make_unique<Ean>(); }

}  // namespace moelab::criteria
