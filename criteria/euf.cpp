// EUF, expert usage frequency (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586): the number of calibration tokens routed to the expert (top-k
// membership). Min-EUF drops the least used experts.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Euf : public Criterion {
 public:
  std::string name() const override { return "EUF"; }
  std::string description() const override { return "usage frequency: tokens routed to the expert (top-k)"; }
  std::vector<std::string> needs() const override { return {results::stat::kUsage}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    return layer_stats(in, moe_index, results::stat::kUsage, name()).tokens_E.to(at::kDouble);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_euf() { return std::make_unique<Euf>(); }

}  // namespace moelab::criteria
