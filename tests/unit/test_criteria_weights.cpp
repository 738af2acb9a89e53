// The weight-based criteria (EWS, RWN, WSR, EWN), RouterNormChange and Random, each
// against an independent naive implementation written here with plain loops over
// elements (double accumulation): cosines by explicit dot products, Frobenius norms
// by sums of squares, sigma_max by power iteration. Also the registry's lookup.
#include <gtest/gtest.h>

#include "random_weights.h"

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/common/error.h"
#include "criteria/criterion.h"
#include "criteria/registry.h"

using namespace moelab;

namespace {

using Matrix = std::vector<std::vector<double>>;  // row-major, [rows][cols]

using test::random_experts;

// Layer 0 dense (no MoE), layers 1.. MoE with E experts each.
models::MoeModel random_model(int64_t L, int64_t E, int64_t D, int64_t F) {
  models::MoeModel m;
  m.config.num_hidden_layers = L;
  m.config.hidden_size = D;
  m.config.moe_intermediate_size = F;
  m.config.num_experts_per_tok = 2;
  m.layers.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    m.config.num_experts_per_layer.push_back(l == 0 ? 0 : E);
    if (l > 0) m.layers[l].moe = random_experts(E, D, F);
  }
  return m;
}

// Expert e's matrices as plain double matrices: gate [F, D], up [F, D], down [D, F].
std::vector<Matrix> expert_matrices(const models::ExpertWeights& w, int64_t e) {
  at::Tensor gu = w.gate_up_EFD.to(at::kFloat).contiguous();
  at::Tensor dn = w.down_EDF.to(at::kFloat).contiguous();
  auto a = gu.accessor<float, 3>();
  auto b = dn.accessor<float, 3>();
  const int64_t F = dn.size(2), D = dn.size(1);
  Matrix gate(F, std::vector<double>(D)), up(F, std::vector<double>(D)), down(D, std::vector<double>(F));
  for (int64_t f = 0; f < F; ++f)
    for (int64_t d = 0; d < D; ++d) {
      gate[f][d] = a[e][f][d];
      up[f][d] = a[e][F + f][d];
    }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t f = 0; f < F; ++f) down[d][f] = b[e][d][f];
  return {gate, up, down};
}

std::vector<double> flatten(const std::vector<Matrix>& ms) {
  std::vector<double> v;
  for (const auto& m : ms)
    for (const auto& row : m) v.insert(v.end(), row.begin(), row.end());
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double frobenius_sq(const Matrix& m) {
  double s = 0;
  for (const auto& row : m)
    for (double x : row) s += x * x;
  return s;
}

// sigma_max(A)^2 = largest eigenvalue of A^T A, by power iteration.
double sigma_max_sq(const Matrix& A) {
  const size_t rows = A.size(), cols = A[0].size();
  std::vector<double> v(cols), Av(rows), w(cols);
  for (size_t j = 0; j < cols; ++j) v[j] = 1.0 + 0.01 * static_cast<double>(j);
  double lambda = 0;
  for (int it = 0; it < 1000000; ++it) {
    const double nv = std::sqrt(dot(v, v));
    for (double& x : v) x /= nv;
    for (size_t i = 0; i < rows; ++i) Av[i] = dot(A[i], v);
    for (size_t j = 0; j < cols; ++j) {
      w[j] = 0;
      for (size_t i = 0; i < rows; ++i) w[j] += A[i][j] * Av[i];
    }
    const double next = dot(Av, Av);  // Rayleigh quotient v^T A^T A v, ||v|| = 1
    if (it > 10 && std::abs(next - lambda) <= 1e-15 * next) return next;
    lambda = next;
    v = w;
  }
  ADD_FAILURE() << "power iteration did not converge";
  return lambda;
}

std::vector<double> naive_ews(const models::ExpertWeights& w) {
  const int64_t E = w.num_experts();
  std::vector<std::vector<double>> vec;
  for (int64_t e = 0; e < E; ++e) vec.push_back(flatten(expert_matrices(w, e)));
  std::vector<double> out(E, 0.0);
  for (int64_t j = 0; j < E; ++j)
    for (int64_t k = 0; k < E; ++k)
      if (k != j) out[j] += dot(vec[j], vec[k]) / std::sqrt(dot(vec[j], vec[j]) * dot(vec[k], vec[k]));
  return out;
}

std::vector<double> naive_ewn(const models::ExpertWeights& w) {
  std::vector<double> out;
  for (int64_t e = 0; e < w.num_experts(); ++e) {
    double s = 0;
    for (const auto& m : expert_matrices(w, e)) s += frobenius_sq(m);
    out.push_back(std::sqrt(s));
  }
  return out;
}

std::vector<double> naive_wsr(const models::ExpertWeights& w) {
  std::vector<double> out;
  for (int64_t e = 0; e < w.num_experts(); ++e) {
    double s = 0;
    for (const auto& m : expert_matrices(w, e)) s += frobenius_sq(m) / sigma_max_sq(m);
    out.push_back(s / 3.0);
  }
  return out;
}

std::vector<double> naive_router_norms(const models::ExpertWeights& w) {
  at::Tensor r = w.router_ED.to(at::kFloat).contiguous();
  auto a = r.accessor<float, 2>();
  std::vector<double> out;
  for (int64_t e = 0; e < r.size(0); ++e) {
    double s = 0;
    for (int64_t d = 0; d < r.size(1); ++d) s += static_cast<double>(a[e][d]) * a[e][d];
    out.push_back(std::sqrt(s));
  }
  return out;
}

void expect_scores(const at::Tensor& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.dim(), 1) << what;
  ASSERT_EQ(got.scalar_type(), at::kDouble) << what;
  ASSERT_TRUE(got.device().is_cpu()) << what;
  ASSERT_EQ(got.size(0), static_cast<int64_t>(want.size())) << what;
  at::Tensor g = got.contiguous();
  for (size_t i = 0; i < want.size(); ++i) {
    const double x = g[i].item<double>();
    EXPECT_NEAR(x, want[i], 1e-6 * std::max(1.0, std::abs(want[i]))) << what << " expert " << i;
  }
}

at::Tensor score(const std::string& name, const criteria::ScoreInputs& in, int64_t moe_index, int64_t layer) {
  return criteria::make_criterion(name)->score_layer(in, moe_index, layer);
}

}  // namespace

TEST(CriteriaWeights, NamesAndNeeds) {
  for (std::string n : {"EWS", "RWN", "WSR", "EWN"}) {
    auto c = criteria::make_criterion(n);
    EXPECT_EQ(c->name(), n);
    EXPECT_EQ(c->needs(), std::vector<std::string>{criteria::kNeedsWeights}) << n;
    EXPECT_FALSE(c->description().empty());
  }
  auto rnc = criteria::make_criterion("RouterNormChange");
  EXPECT_EQ(rnc->needs(), (std::vector<std::string>{criteria::kNeedsWeights, criteria::kNeedsSecondCheckpoint}));
  EXPECT_TRUE(criteria::make_criterion("Random")->needs().empty());
}

TEST(CriteriaWeights, MatchNaiveLoops) {
  at::manual_seed(11);
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {{8, 16, 12}, {5, 7, 9}, {1, 6, 4}};
  for (auto [E, D, F] : shapes) {
    models::MoeModel m = random_model(3, E, D, F);
    criteria::ScoreInputs in;
    in.model = &m;
    for (int64_t layer = 1; layer < 3; ++layer) {
      const auto& w = *m.layers[layer].moe;
      const std::string at_ = " E=" + std::to_string(E) + " layer " + std::to_string(layer);
      expect_scores(score("EWS", in, layer - 1, layer), naive_ews(w), "EWS" + at_);
      expect_scores(score("RWN", in, layer - 1, layer), naive_router_norms(w), "RWN" + at_);
      expect_scores(score("WSR", in, layer - 1, layer), naive_wsr(w), "WSR" + at_);
      expect_scores(score("EWN", in, layer - 1, layer), naive_ewn(w), "EWN" + at_);
    }
  }
}

TEST(CriteriaWeights, LowPrecisionWeightsScoreInFloat64) {
  at::manual_seed(12);
  models::MoeModel m = random_model(2, 6, 16, 8);
  auto& w = *m.layers[1].moe;
  w.router_ED = w.router_ED.to(at::kBFloat16);
  w.gate_up_EFD = w.gate_up_EFD.to(at::kBFloat16);
  w.down_EDF = w.down_EDF.to(at::kBFloat16);
  criteria::ScoreInputs in;
  in.model = &m;
  // The naive versions read the bf16 values exactly (bf16 -> float is exact).
  expect_scores(score("EWS", in, 0, 1), naive_ews(w), "EWS bf16");
  expect_scores(score("RWN", in, 0, 1), naive_router_norms(w), "RWN bf16");
  expect_scores(score("WSR", in, 0, 1), naive_wsr(w), "WSR bf16");
  expect_scores(score("EWN", in, 0, 1), naive_ewn(w), "EWN bf16");
}

TEST(CriteriaWeights, LargeLayerAccumulatesOverChunks) {
  // Big enough that EWS/EWN accumulate over several float64 column chunks: a chunk
  // is 2^25 / E columns of the [E, 2F*D] gate_up view (here 2^21 < 2*2100*512).
  at::manual_seed(13);
  models::MoeModel m = random_model(2, 16, 512, 2100);
  criteria::ScoreInputs in;
  in.model = &m;
  const auto& w = *m.layers[1].moe;
  expect_scores(score("EWS", in, 0, 1), naive_ews(w), "EWS large");
  expect_scores(score("EWN", in, 0, 1), naive_ewn(w), "EWN large");
}

TEST(CriteriaWeights, EwsOfIdenticalAndOppositeExperts) {
  at::manual_seed(14);
  models::MoeModel m = random_model(2, 3, 8, 4);
  auto& w = *m.layers[1].moe;
  w.gate_up_EFD[1].copy_(w.gate_up_EFD[0] * 3);
  w.down_EDF[1].copy_(w.down_EDF[0] * 3);
  w.gate_up_EFD[2].copy_(-w.gate_up_EFD[0]);
  w.down_EDF[2].copy_(-w.down_EDF[0]);
  criteria::ScoreInputs in;
  in.model = &m;
  // cos(0,1) = 1, cos(0,2) = cos(1,2) = -1.
  expect_scores(score("EWS", in, 0, 1), {0.0, 0.0, -2.0}, "EWS identical/opposite");
}

TEST(CriteriaWeights, RouterNormChangeIsFineTunedMinusPretrained) {
  at::manual_seed(15);
  models::MoeModel pre = random_model(3, 6, 10, 4);
  models::MoeModel ft = random_model(3, 6, 10, 4);
  criteria::ScoreInputs in;
  in.model = &ft;
  in.second = &pre;
  for (int64_t layer = 1; layer < 3; ++layer) {
    auto a = naive_router_norms(*ft.layers[layer].moe);
    auto b = naive_router_norms(*pre.layers[layer].moe);
    std::vector<double> want;
    for (size_t i = 0; i < a.size(); ++i) want.push_back(a[i] - b[i]);
    expect_scores(score("RouterNormChange", in, layer - 1, layer), want, "RouterNormChange");
  }
  // Same checkpoint twice: no change.
  in.second = &ft;
  expect_scores(score("RouterNormChange", in, 0, 1), std::vector<double>(6, 0.0), "RouterNormChange self");
}

TEST(CriteriaWeights, RouterNormChangeNeedsAMatchingSecondCheckpoint) {
  at::manual_seed(16);
  models::MoeModel ft = random_model(2, 6, 10, 4);
  models::MoeModel pruned = random_model(2, 4, 10, 4);
  criteria::ScoreInputs in;
  in.model = &ft;
  try {
    score("RouterNormChange", in, 0, 1);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("criterion RouterNormChange"), std::string::npos) << msg;
    EXPECT_NE(msg.find("pre-trained"), std::string::npos) << msg;
  }
  in.second = &pruned;
  try {
    score("RouterNormChange", in, 0, 1);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("criterion RouterNormChange"), std::string::npos) << msg;
    EXPECT_NE(msg.find("6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4"), std::string::npos) << msg;
  }
}

TEST(CriteriaWeights, RandomIsDeterministicPerSeedAndLayer) {
  at::manual_seed(17);
  models::MoeModel m = random_model(4, 16, 8, 4);
  criteria::ScoreInputs in;
  in.model = &m;
  in.seed = 1234;
  at::Tensor a1 = score("Random", in, 0, 1);
  at::manual_seed(999);  // the global generator plays no part
  at::Tensor a2 = score("Random", in, 0, 1);
  at::Tensor b = score("Random", in, 1, 2);
  ASSERT_EQ(a1.scalar_type(), at::kDouble);
  ASSERT_EQ(a1.size(0), 16);
  EXPECT_TRUE(at::equal(a1, a2));
  EXPECT_FALSE(at::equal(a1, b));
  EXPECT_TRUE((a1 >= 0).all().item<bool>() && (a1 < 1).all().item<bool>());
  in.seed = 1235;
  EXPECT_FALSE(at::equal(a1, score("Random", in, 0, 1)));
  // Without a model, the expert count comes from the calibration statistics.
  results::CalibrationStats stats;
  stats.layers.resize(3);
  stats.layers[1].layer = 2;
  stats.layers[1].tokens_E = at::zeros({16}, at::kLong);
  criteria::ScoreInputs only_stats;
  only_stats.stats = &stats;
  only_stats.seed = 1234;
  EXPECT_TRUE(at::equal(score("Random", only_stats, 1, 2), b));
  // Neither: nothing says how many experts there are.
  EXPECT_THROW(score("Random", criteria::ScoreInputs{}, 0, 1), InputError);
}

TEST(CriteriaWeights, MissingOrPartialWeightsAreInputErrors) {
  at::manual_seed(18);
  models::MoeModel m = random_model(2, 4, 8, 4);
  criteria::ScoreInputs none;
  for (std::string n : {"EWS", "RWN", "WSR", "EWN", "RouterNormChange"}) {
    try {
      score(n, none, 0, 1);
      FAIL() << n << ": expected InputError";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("criterion " + n), std::string::npos) << e.what();
    }
  }
  criteria::ScoreInputs in;
  in.model = &m;
  in.second = &m;
  // A dense layer is not an MoE layer.
  for (std::string n : {"EWS", "RWN", "WSR", "EWN", "RouterNormChange"})
    EXPECT_THROW(score(n, in, 0, 0), InputError) << n;
  // Expert parallelism: this process holds experts [2, 4) only.
  auto& w = *m.layers[1].moe;
  w.gate_up_EFD = w.gate_up_EFD.narrow(0, 2, 2).contiguous();
  w.down_EDF = w.down_EDF.narrow(0, 2, 2).contiguous();
  w.first_local = 2;
  for (std::string n : {"EWS", "RWN", "WSR", "EWN", "RouterNormChange"}) {
    try {
      score(n, in, 0, 1);
      FAIL() << n << ": expected InputError";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("criterion " + n), std::string::npos) << e.what();
    }
  }
}

TEST(CriteriaRegistry, FindsWeightCriteriaCaseInsensitivelyAndSuggests) {
  EXPECT_EQ(criteria::make_criterion("ewn")->name(), "EWN");
  EXPECT_EQ(criteria::make_criterion("routernormchange")->name(), "RouterNormChange");
  EXPECT_EQ(criteria::make_criterion("RANDOM")->name(), "Random");
  try {
    criteria::make_criterion("EWNN");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"EWN\""), std::string::npos) << e.what();
  }
  int found = 0;
  for (const auto& c : criteria::all_criteria())
    for (std::string n : {"EWS", "RWN", "WSR", "EWN", "RouterNormChange", "Random"}) found += c->name() == n;
  EXPECT_EQ(found, 6);
}
