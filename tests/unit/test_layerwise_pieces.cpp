// The pieces of `moelab calibrate --layerwise`: memory sizes from the command line,
// the hidden-state store (memory or scratch file), the progress line.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/common/error.h"
#include "core/common/memory_budget.h"
#include "runner/jobs/layerwise/layer_progress.h"
#include "runner/jobs/layerwise/layer_states.h"

namespace fs = std::filesystem;
using moelab::InputError;
using moelab::jobs::LayerStates;
using moelab::parse_byte_size;

TEST(ParseByteSize, SuffixesArePowersOf1024) {
  EXPECT_EQ(parse_byte_size("--m", "4096"), 4096);
  EXPECT_EQ(parse_byte_size("--m", "10M"), 10 * 1048576);
  EXPECT_EQ(parse_byte_size("--m", "64MiB"), 64 * 1048576);
  EXPECT_EQ(parse_byte_size("--m", "2kb"), 2048);
  EXPECT_EQ(parse_byte_size("--m", "1.5G"), 1536LL * 1048576);
  EXPECT_EQ(parse_byte_size("--m", "1T"), 1LL << 40);
}

TEST(ParseByteSize, BadSizesNameTheFlag) {
  for (const char* bad : {"", "M", "12Q", "10 M", "1MM", "nan", "inf"}) {
    try {
      parse_byte_size("--memory-budget", bad);
      ADD_FAILURE() << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--memory-budget: ", 0), 0u) << e.what();
    }
  }
  for (const char* bad : {"0", "-1M", "0.1"}) EXPECT_THROW(parse_byte_size("--memory-budget", bad), InputError) << bad;
}

TEST(LayerStates, ScratchFileHoldsWhatMemoryHolds) {
  const fs::path dir = fs::temp_directory_path() / ("moelab_lw_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<std::vector<int64_t>> shapes = {{2, 5, 3}, {1, 7, 3}, {3, 1, 3}};
  LayerStates mem(shapes, at::kFloat, true, dir.string()), file(shapes, at::kFloat, false, dir.string());
  EXPECT_TRUE(fs::is_empty(dir));  // the scratch file has no name
  EXPECT_EQ(file.bytes(), (30 + 21 + 9) * 4);
  for (int round = 0; round < 2; ++round)  // the second round overwrites the first
    for (size_t i = 0; i < shapes.size(); ++i) {
      at::Tensor h = at::randn(shapes[i]);
      mem.put(i, h);
      file.put(i, h);
    }
  for (size_t i = 0; i < shapes.size(); ++i) EXPECT_TRUE(at::equal(mem.get(i), file.get(i))) << i;
  EXPECT_THROW(file.put(0, at::zeros({2, 5, 4})), c10::Error);
  fs::remove_all(dir);
}

TEST(LayerStates, UnwritableScratchDirectoryIsAnInputError) {
  EXPECT_THROW(LayerStates({{1, 1, 1}}, at::kFloat, false, "/nonexistent/dir"), InputError);
}

TEST(LayerProgress, LineShowsBarRateAndEta) {
  EXPECT_EQ(moelab::jobs::LayerProgress::line(2, 12, 1, 4, 0.25, 8123.4, 41),
            "layer 3/12 batch 2/4 [#####...............]  25% 8123 tok/s ETA 0:41");
  EXPECT_EQ(moelab::jobs::LayerProgress::line(0, 1, 0, 1, 1.0, 0, 3725),
            "layer 1/1 batch 1/1 [####################] 100% 0 tok/s ETA 62:05");
}

// 16 layers x 2 batches of 33 tokens: 66 model tokens went through the model (each
// once per layer), not 16 x 66 (the bar once showed 529 "tok/s" for 33 model tokens/s).
TEST(LayerProgress, LayerwiseRateCountsModelTokensNotTokenLayers) {
  moelab::jobs::LayerProgress p(16, 2, 1e9);
  for (int64_t l = 0; l < 16; ++l)
    for (int64_t b = 0; b < 2; ++b) p.batch_done(l, b, 33);
  EXPECT_DOUBLE_EQ(p.tokens_per_s(2.0), 33.0);
  moelab::jobs::LayerProgress whole(0, 2, 1e9);
  whole.batch_done(0, 0, 33);
  whole.batch_done(0, 1, 33);
  EXPECT_DOUBLE_EQ(whole.tokens_per_s(2.0), 33.0);
}

TEST(LayerProgress, WholeModelLineLeavesTheLayerOut) {
  EXPECT_EQ(moelab::jobs::LayerProgress::line(0, 0, 6, 20, 0.35, 8123.4, 41),
            "batch 7/20 [#######.............]  35% 8123 tok/s ETA 0:41");
}
