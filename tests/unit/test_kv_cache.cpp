// Cached decoding (core/models/kv_cache.h) against the whole-sequence forward, which
// test_model_parity.cpp checks against transformers: for every family fixture, a batch of
// three sequences of different lengths is run in pieces (a prefill of different lengths,
// a second multi-token piece with padding, then one token per step while finished
// sequences leave the batch), and the logits of each piece's last token equal forward()'s
// at that position. The fixtures' sequences (17, 9 and 23 tokens) are longer than their
// sliding windows and Llama-4 chunks (6), so window and chunk masks over cached keys are
// exercised.
#include <gtest/gtest.h>

#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "core/hf/safetensors.h"
#include "core/models/kv_cache.h"
#include "core/models/moe_model.h"
#include "fixtures.h"

using namespace moelab;

namespace {

struct CachedRun {
  double max_abs_diff = 0;
  int64_t compared = 0;
};

CachedRun run_cached(const std::string& name) {
  const std::string dir = test::fixtures_dir() + "/models/" + name;
  auto ref = hf::SafetensorsFile::open(dir + ".ref.safetensors");
  models::MoeModel m = models::load_model(dir);  // float32
  at::Tensor ids = ref->tensor("input_ids");
  at::Tensor lengths_t = ref->tensor("lengths");
  std::vector<int64_t> len(lengths_t.data_ptr<int64_t>(), lengths_t.data_ptr<int64_t>() + lengths_t.numel());
  int64_t T = ids.size(1);
  if (m.config.rope.type == "longrope") {
    // LongRoPE switches to its long factors once the sequence passes the pretraining
    // length, for the keys computed from then on only (transformers' cache does the same):
    // compare below that length, where both use the short factors.
    T = std::min<int64_t>(T, m.config.rope.original_max_position_embeddings);
    ids = ids.narrow(1, 0, T).contiguous();
    for (auto& l : len) l = std::min(l, T);
  }
  const int64_t B = ids.size(0);
  at::Tensor full;
  {
    at::NoGradGuard ng;
    full = models::forward(m, ids, len);  // [B, T, V]
  }
  CachedRun r;
  auto check = [&](const at::Tensor& logits_BV, const std::vector<int64_t>& rows, const std::vector<int64_t>& at) {
    for (size_t a = 0; a < rows.size(); ++a) {
      at::Tensor want = full[rows[a]][at[a]];
      r.max_abs_diff = std::max(r.max_abs_diff, (logits_BV[int64_t(a)] - want).abs().max().item<double>());
      ++r.compared;
    }
  };
  // Runs the next n[a] tokens of each sequence rows[a] (from done[rows[a]]) as one padded step.
  std::vector<int64_t> done(B, 0);
  models::KvCache cache;
  cache.reserve = 8;  // short on purpose: the cache must grow
  auto step = [&](const std::vector<int64_t>& rows, const std::vector<int64_t>& n) {
    const int64_t Tn = *std::max_element(n.begin(), n.end());
    at::Tensor x = at::zeros({int64_t(rows.size()), Tn}, at::kLong);
    std::vector<int64_t> last;
    for (size_t a = 0; a < rows.size(); ++a) {
      x[int64_t(a)].narrow(0, 0, n[a]).copy_(ids[rows[a]].narrow(0, done[rows[a]], n[a]));
      done[rows[a]] += n[a];
      last.push_back(done[rows[a]] - 1);
    }
    check(models::forward_cached(m, x, n, cache), rows, last);
  };
  std::vector<int64_t> rows(B), first, second;
  for (int64_t b = 0; b < B; ++b) {
    rows[b] = b;
    first.push_back(std::max<int64_t>(1, len[b] / 2 - b % 2));
    second.push_back(std::min<int64_t>(3 - b % 2, len[b] - first[b]));
  }
  step(rows, first);
  step(rows, second);
  for (;;) {
    std::vector<int64_t> keep, live;
    for (size_t a = 0; a < rows.size(); ++a)
      if (done[rows[a]] < len[rows[a]]) {
        keep.push_back(int64_t(a));
        live.push_back(rows[a]);
      }
    if (live.empty()) break;
    cache.keep(keep);
    rows = live;
    step(rows, std::vector<int64_t>(rows.size(), 1));
  }
  for (int64_t b = 0; b < B; ++b) EXPECT_EQ(done[b], len[b]);
  // Only the longest sequences ran in the last step.
  const int64_t longest = *std::max_element(len.begin(), len.end());
  EXPECT_EQ(int64_t(cache.lengths.size()), std::count(len.begin(), len.end(), longest));
  return r;
}

}  // namespace

class CachedDecoding : public ::testing::TestWithParam<std::string> {};

TEST_P(CachedDecoding, LogitsOfEachStepEqualTheWholeSequenceForwardWithin1e4) {
  MOELAB_REQUIRE_FIXTURES();
  CachedRun r = run_cached(GetParam());
  EXPECT_GE(r.compared, 20);
  EXPECT_LE(r.max_abs_diff, 1e-4) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Families, CachedDecoding,
                         ::testing::Values("mixtral", "mixtral_swa_sharded", "mixtral_fused", "qwen3", "qwen2_moe",
                                           "qwen2_moe_swa", "olmoe", "olmoe_clip", "deepseek_v3", "deepseek_v3_yarn",
                                           "deepseek_v2", "deepseek_v2_group", "gpt_oss", "glm4_moe", "glm4_moe_air",
                                           "minimax_m2", "glm4_moe_lite", "ernie4_5_moe", "ernie4_5_moe_interval",
                                           "phimoe", "phimoe_long", "llama4", "qwen3_next", "qwen3_next_bf16",
                                           "qwen3_5_moe"));

TEST(KvCache, GrowsPastItsReserveAndCountsItsBytes) {
  MOELAB_REQUIRE_FIXTURES();
  models::MoeModel m = models::load_model(test::fixtures_dir() + "/models/mixtral");
  models::KvCache cache;
  cache.reserve = 2;
  at::Tensor x = at::ones({1, 3}, at::kLong);
  models::forward_cached(m, x, {3}, cache);
  const auto& c = m.config;
  // 3 tokens needed more than the 2 reserved: exactly 3 slots, then twice the need.
  EXPECT_EQ(cache.k[0].size(2), 3);
  EXPECT_EQ(cache.bytes(), 2 * c.num_hidden_layers * c.num_key_value_heads * 3 * c.head_dim * 4);
  models::forward_cached(m, at::ones({1, 1}, at::kLong), {1}, cache);
  EXPECT_EQ(cache.k[0].size(2), 8);
  EXPECT_EQ(cache.lengths, std::vector<int64_t>{4});
}
