// ETS, expert token similarity (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, inference-based criteria): how much the set of token ids routed to
// the expert overlaps with those routed to the other experts.
//
// Reading implemented (the paper says "Jaccard-style, summed over k"):
//   ETS_j = sum over k != j of J(S_j, S_k),  J(A, B) = |A n B| / |A u B|, 0 when A u B
// is empty, with S_j the set of DISTINCT token ids routed to j (row j of
// token_bitmap_EW, bits v < vocab_size; multiplicities are not kept by the statistics).
// A layer with one expert scores 0 (empty sum). Max-ETS drops the experts whose tokens
// the others also see most (the most redundant); Min-ETS the most distinctive.
// Computed in float64: the bitmaps are unpacked to 0/1 columns in chunks of the
// vocabulary and the intersections accumulated as a Gram matrix (exact: counts < 2^53).
#include <algorithm>

#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Ets : public Criterion {
 public:
  std::string name() const override { return "ETS"; }
  std::string description() const override {
    return "token similarity: sum over other experts of Jaccard(token ids of j, token ids of k)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kTokenIds}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    at::Tensor bm = token_bitmap(in, moe_index, name());
    const int64_t V = in.stats->vocab_size;
    const int64_t E = bm.size(0), W = bm.size(1);
    const auto f64 = at::TensorOptions().dtype(at::kDouble);

    // lut[x, b] = bit b of byte value x (little bit order: token id 8 * byte + b)
    std::vector<double> bits(256 * 8);
    for (int x = 0; x < 256; ++x)
      for (int b = 0; b < 8; ++b) bits[size_t(x * 8 + b)] = double((x >> b) & 1);
    at::Tensor lut = at::tensor(bits, f64).reshape({256, 8});

    at::Tensor inter = at::zeros({E, E}, f64);  // |S_j n S_k|; diagonal |S_j|
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(E * 8, 1));  // bytes
    for (int64_t b0 = 0; b0 < W; b0 += chunk) {
      const int64_t nb = std::min(chunk, W - b0);
      at::Tensor x = lut.index({bm.narrow(1, b0, nb).to(at::kLong)}).reshape({E, nb * 8});
      const int64_t valid = std::min(nb * 8, V - b0 * 8);  // ids >= V are not tokens
      x = x.narrow(1, 0, valid);
      inter.add_(at::mm(x, x.t()));
    }
    at::Tensor size = inter.diagonal();
    at::Tensor uni = size.unsqueeze(1) + size.unsqueeze(0) - inter;
    at::Tensor jac = at::where(uni > 0, inter / uni.clamp_min(1), at::zeros_like(uni));
    jac.fill_diagonal_(0);
    return jac.sum(1);
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ets() { return std::make_unique<Ets>(); }

}  // namespace moelab::criteria
