// EAO, expert activation outliers (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, activation-based criteria): the number of activation values of
// the expert that lie outside mean +- 3 std.
//
// Reading implemented: per channel c of the intermediate activation a_j (width F),
// mean_jc and the population std_jc over the tokens routed to j (first calibration
// pass); the score counts the values a_jc(x), over routed tokens x and channels c,
// with |a_jc(x) - mean_jc| > 3 std_jc (second pass). A raw count, like the paper's.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Eao : public Criterion {
 public:
  std::string name() const override { return "EAO"; }
  std::string description() const override {
    return "activation outliers: values outside the channel's mean +- 3 std (two passes)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kActOutliers}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kActOutliers, name()).act_outliers_E.to(at::kDouble);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_eao() { return std::make_unique<Eao>(); }

}  // namespace moelab::criteria
