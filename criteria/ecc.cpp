// ECC, expert co-activation (MC-Suite, "Finding Fantastic Experts in MoEs",
// arXiv 2504.05586, inference-based criteria): count, for each pair (j, k), the
// calibration tokens routed to both; for the most co-activated pairs, the less used
// expert of the pair is the one to drop.
//
// The paper states a dropping rule, not a per-expert score. Reading implemented, as a
// score whose Min direction (drop the lowest) follows that rule:
// - Co-activation of a pair is the RAW count C_jk = coactivation_EE[j, k] (tokens
//   routed to both; no normalisation by usage). Only pairs with C_jk > 0 are pairs.
// - The pairs j < k are walked from most to least co-activated; ties in C_jk are
//   broken by lower j, then lower k (lexicographic), so the walk is deterministic.
// - The "less used" expert of a pair is the one with fewer tokens (tokens_E); equal
//   usage -> the higher expert index.
// - Walking the pairs, each time the less used expert of the pair has no score yet it
//   gets the next score 0, 1, 2, ... (the first one assigned gets the lowest score).
//   A pair whose less used expert is already scored is skipped (its more used member
//   is NOT scored through it).
// - Experts never scored that way (never the less used member of a co-activated pair,
//   e.g. experts with no token) get the scores after those, ordered by usage: fewer
//   tokens -> lower score, equal usage -> the higher index lower.
// So the scores are a permutation of 0 .. E-1 (float64): Min-ECC drops the less used
// member of the most co-activated pairs first; Max-ECC drops the most used of the
// experts that are never the redundant member of a pair.
#include <algorithm>
#include <numeric>
#include <tuple>

#include "core/common/error.h"
#include "criteria/stats_access.h"

namespace moelab::criteria {
namespace {

class Ecc : public Criterion {
 public:
  std::string name() const override { return "ECC"; }
  std::string description() const override {
    return "co-activation: less used member of the most co-activated pairs scores lowest (rank, 0..E-1)";
  }
  std::vector<std::string> needs() const override { return {results::stat::kUsage, results::stat::kCoactivation}; }
  at::Tensor score_layer(const ScoreInputs& in, int64_t moe_index, int64_t) const override {
    const auto& s = layer_stats(in, moe_index, results::stat::kCoactivation, name());
    at::Tensor n_t = s.tokens_E.to(at::kLong).contiguous();
    at::Tensor c_t = s.coactivation_EE.to(at::kLong).contiguous();
    const int64_t E = n_t.size(0);
    if (c_t.dim() != 2 || c_t.size(0) != E || c_t.size(1) != E)
      throw InputError("criterion " + name(), "coactivation_EE of MoE layer #" + std::to_string(moe_index) +
                                                  " is not [E, E] with E = " + std::to_string(E));
    const int64_t* n = n_t.data_ptr<int64_t>();
    const int64_t* c = c_t.data_ptr<int64_t>();

    // true if a is the less used of {a, b}: fewer tokens, ties -> higher index.
    auto less_used = [&](int64_t a, int64_t b) { return n[a] < n[b] || (n[a] == n[b] && a > b); };

    std::vector<std::tuple<int64_t, int64_t, int64_t>> pairs;  // (-C, j, k): sorts most co-activated first
    for (int64_t j = 0; j < E; ++j)
      for (int64_t k = j + 1; k < E; ++k)
        if (c[j * E + k] > 0) pairs.emplace_back(-c[j * E + k], j, k);
    std::sort(pairs.begin(), pairs.end());

    std::vector<double> score(size_t(E), -1.0);
    double next = 0;
    for (const auto& [neg_c, j, k] : pairs) {
      const int64_t drop = less_used(j, k) ? j : k;
      if (score[size_t(drop)] < 0) score[size_t(drop)] = next++;
    }
    std::vector<int64_t> rest;
    for (int64_t j = 0; j < E; ++j)
      if (score[size_t(j)] < 0) rest.push_back(j);
    std::sort(rest.begin(), rest.end(), less_used);  // less used first
    for (int64_t j : rest) score[size_t(j)] = next++;

    return at::tensor(score, at::TensorOptions().dtype(at::kDouble));
  }
};

}  // namespace

std::unique_ptr<Criterion> make_ecc() { return std::make_unique<Ecc>(); }

}  // namespace moelab::criteria
