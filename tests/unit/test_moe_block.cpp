// The grouped expert computation against a naive per-token loop written from the
// definition (softmax over experts, top-k, optional renormalisation, SwiGLU).
#include <gtest/gtest.h>

#include "random_weights.h"

#include "core/common/error.h"
#include "core/models/blocks.h"
#include "core/models/expert_surgery.h"

using namespace moelab;

namespace {

using test::random_experts;

at::Tensor naive_moe(const models::ExpertWeights& w, int64_t k, bool renorm, const at::Tensor& x) {
  const int64_t N = x.size(0), E = w.num_experts(), F = w.down_EDF.size(2);
  at::Tensor out = at::zeros_like(x);
  for (int64_t t = 0; t < N; ++t) {
    std::vector<std::pair<double, int64_t>> p;
    at::Tensor logits = at::mv(w.router_ED, x[t]);
    double mx = logits.max().item<double>(), z = 0;
    for (int64_t e = 0; e < E; ++e) z += std::exp(logits[e].item<double>() - mx);
    for (int64_t e = 0; e < E; ++e) p.emplace_back(std::exp(logits[e].item<double>() - mx) / z, e);
    std::sort(p.begin(), p.end(), [](auto& a, auto& b) { return a.first > b.first; });
    double s = 0;
    for (int64_t j = 0; j < k; ++j) s += p[j].first;
    for (int64_t j = 0; j < k; ++j) {
      int64_t e = p[j].second;
      at::Tensor g = at::mv(w.gate_up_EFD[e].narrow(0, 0, F), x[t]);
      at::Tensor u = at::mv(w.gate_up_EFD[e].narrow(0, F, F), x[t]);
      at::Tensor y = at::mv(w.down_EDF[e], g * at::sigmoid(g) * u);
      out[t] += y * (renorm ? p[j].first / s : p[j].first);
    }
  }
  return out;
}

hf::ModelConfig config(int64_t k, bool renorm) {
  hf::ModelConfig c;
  c.num_experts_per_tok = k;
  c.router.norm_topk_prob = renorm;
  c.hidden_act = "silu";
  return c;
}

}  // namespace

TEST(MoeBlock, GroupedComputationMatchesNaivePerTokenLoop) {
  at::manual_seed(0);
  models::LocalDispatcher local;
  for (bool renorm : {true, false}) {
    auto w = random_experts(8, 16, 12);
    at::Tensor x = at::randn({37, 16});
    at::Tensor got = models::moe_forward(w, config(2, renorm), x, 0, local, nullptr);
    EXPECT_LE((got - naive_moe(w, 2, renorm, x)).abs().max().item<double>(), 1e-5) << "renorm=" << renorm;
  }
}

TEST(MoeBlock, RemovingExpertsEqualsRoutingOverTheSurvivorsOnly) {
  at::manual_seed(1);
  models::MoeModel m;
  m.config = config(2, true);
  m.config.num_hidden_layers = 1;
  m.config.num_experts_per_layer = {8};
  m.layers.resize(1);
  m.layers[0].moe = random_experts(8, 16, 12);
  models::ExpertWeights full = *m.layers[0].moe;
  models::remove_experts(m, {{0, {1, 5}}});
  const auto& w = *m.layers[0].moe;
  EXPECT_EQ(w.num_experts(), 6);
  EXPECT_EQ(w.original_ids, (std::vector<int64_t>{0, 2, 3, 4, 6, 7}));
  EXPECT_EQ(m.config.num_experts_per_layer[0], 6);
  EXPECT_TRUE(at::equal(w.router_ED[1], full.router_ED[2]));
  EXPECT_TRUE(at::equal(w.down_EDF[4], full.down_EDF[6]));
  at::Tensor x = at::randn({20, 16});
  models::LocalDispatcher local;
  EXPECT_LE((models::moe_forward(w, m.config, x, 0, local, nullptr) - naive_moe(w, 2, true, x)).abs().max().item<double>(),
            1e-5);
}

TEST(MoeBlock, BadDropListsAreInputErrors) {
  models::MoeModel m;
  m.config = config(2, true);
  m.config.num_hidden_layers = 1;
  m.config.num_experts_per_layer = {4};
  m.layers.resize(1);
  m.layers[0].moe = random_experts(4, 8, 4);
  EXPECT_THROW(models::remove_experts(m, {{3, {0}}}), InputError);        // no such layer
  EXPECT_THROW(models::remove_experts(m, {{0, {4}}}), InputError);        // no such expert
  EXPECT_THROW(models::remove_experts(m, {{0, {1, 1}}}), InputError);     // repeated
  EXPECT_THROW(models::remove_experts(m, {{0, {0, 1, 2}}}), InputError);  // fewer than k left
  EXPECT_EQ(m.layers[0].moe->num_experts(), 4);
}
