// The chunked gated delta rule (core/models/gated_deltanet.h) against the token-by-token
// recurrence that defines it, and its carried state against running the sequence in two
// parts (what cached decoding does).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "core/models/gated_deltanet.h"

namespace moelab {
namespace {

struct Inputs {
  at::Tensor q, k, v, g, beta;
};

// B = 2, Hk = 2 key heads serving Hv = 4 value heads, Dk = 8, Dv = 6; decays g = -softplus
// (some close to 0, some strong), write strengths beta in (0, 1).
Inputs make_inputs(int64_t T, uint64_t seed) {
  at::manual_seed(seed);
  Inputs x;
  x.q = at::randn({2, T, 2, 8});
  x.k = at::randn({2, T, 2, 8});
  x.v = at::randn({2, T, 4, 6});
  x.g = -at::softplus(at::randn({2, T, 4}) * 2.0);
  x.beta = at::sigmoid(at::randn({2, T, 4}) * 2.0);
  return x;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(GatedDeltaRule, ChunkedEqualsTheTokenByTokenRecurrenceWithin1e5) {
  // Lengths below, at and past a chunk, none a multiple of it but one.
  for (int64_t chunk : {1, 4, 16, 64}) {
    for (int64_t T : {1, 5, 16, 37, 130}) {
      const Inputs x = make_inputs(T, 7 + T);
      auto [ref, ref_state] = models::gated_delta_rule_recurrent(x.q, x.k, x.v, x.g, x.beta);
      auto [out, state] = models::gated_delta_rule_chunked(x.q, x.k, x.v, x.g, x.beta, chunk);
      ASSERT_EQ(out.sizes(), ref.sizes());
      EXPECT_LE(max_diff(out, ref), 1e-5) << "chunk " << chunk << ", T " << T;
      EXPECT_LE(max_diff(state, ref_state), 1e-5) << "chunk " << chunk << ", T " << T;
      EXPECT_GT(ref.abs().max().item<double>(), 0.1);  // not a trivial zero output
    }
  }
}

TEST(GatedDeltaRule, AStateCarriedAcrossTwoCallsGivesTheOneCallOutputs) {
  const Inputs x = make_inputs(50, 3);
  auto [whole, whole_state] = models::gated_delta_rule_chunked(x.q, x.k, x.v, x.g, x.beta, 16);
  auto part = [&](const at::Tensor& t, int64_t from, int64_t n) { return t.narrow(1, from, n); };
  auto [a, sa] = models::gated_delta_rule_chunked(part(x.q, 0, 21), part(x.k, 0, 21), part(x.v, 0, 21),
                                                  part(x.g, 0, 21), part(x.beta, 0, 21), 16);
  auto [b, sb] = models::gated_delta_rule_recurrent(part(x.q, 21, 29), part(x.k, 21, 29), part(x.v, 21, 29),
                                                    part(x.g, 21, 29), part(x.beta, 21, 29), sa);
  EXPECT_LE(max_diff(at::cat({a, b}, 1), whole), 1e-5);
  EXPECT_LE(max_diff(sb, whole_state), 1e-5);
}

TEST(GatedDeltaRule, WithFullWritesAndNoDecayAKeyReadsBackItsValue) {
  // beta = 1, g = 0: writing v under a unit key k and querying with k returns v (the delta
  // rule replaces what the state held for k), scaled by Dk^-0.5 on the query side.
  at::Tensor k = at::zeros({1, 2, 1, 4});
  k.index_put_({0, 0, 0, 0}, 1.0);
  k.index_put_({0, 1, 0, 0}, 1.0);  // the same key twice: the second write replaces the first
  at::Tensor v = at::zeros({1, 2, 1, 3});
  v[0][0][0] = at::tensor({1.0f, 2.0f, 3.0f});
  v[0][1][0] = at::tensor({-4.0f, 5.0f, 0.5f});
  at::Tensor g = at::zeros({1, 2, 1}), beta = at::ones({1, 2, 1});
  auto [out, state] = models::gated_delta_rule_chunked(k, k, v, g, beta, 64);
  at::Tensor expected = at::tensor({-4.0f, 5.0f, 0.5f}) * 0.5;  // Dk = 4: q scaled by 1/2
  EXPECT_LE(max_diff(out[0][1][0], expected), 1e-5);  // the L2 norm's eps 1e-6
}

}  // namespace
}  // namespace moelab
