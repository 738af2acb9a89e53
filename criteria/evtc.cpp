// EVTC, expert vocabulary coverage (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, inference-based criteria): the number of distinct input token ids
// routed to the expert during calibration, divided by the vocabulary size.
//
// Reading implemented: |S_j| / V, with S_j the set of token ids v whose bit is set in
// row j of token_bitmap_EW (bit v%8 of byte v/8) and V = the file's vocab_size (the
// model's vocabulary, not the ids seen in the calibration set). Bits at or beyond V in
// the last byte are ignored. An expert that received no token scores 0.
// Min-EVTC drops the experts that see the narrowest vocabulary.
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Evtc : public Criterion {
 public:
  std::string name() const override { return "EVTC"; }
  std::string description() const override {
    return "vocabulary coverage: distinct token ids routed to the expert / vocab size";
  }
  std::vector<std::string> needs() const override { return {results::stat::kTokenIds}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    at::Tensor bm = token_bitmap(in, moe_index, name());
    const int64_t V = in.stats->vocab_size;
    // popcount of every byte value
    std::vector<int64_t> pc(256);
    for (int v = 0; v < 256; ++v) pc[size_t(v)] = __builtin_popcount(unsigned(v));
    at::Tensor lut = at::tensor(pc, at::TensorOptions().dtype(at::kLong));

    const int64_t full = V / 8, rem = V % 8;
    at::Tensor count = lut.index({bm.narrow(1, 0, full).to(at::kLong)}).sum(1);
    if (rem > 0) {  // the last byte holds only `rem` valid bits
      at::Tensor last = at::bitwise_and(bm.select(1, full).to(at::kLong), (int64_t{1} << rem) - 1);
      count = count + lut.index({last});
    }
    return count.to(at::kDouble) / double(V);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_evtc() { return std::make_unique<Evtc>(); }

}  // namespace moelab::criteria
