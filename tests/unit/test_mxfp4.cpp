// MXFP4 decoding (core/hf/mxfp4.h) against values worked out by hand from the format: FP4
// E2M1 codes (sign, 2-bit exponent, 1-bit mantissa: 0, 0.5, 1, 1.5, 2, 3, 4, 6), two per
// byte with the low nibble first, 32 values per block sharing an E8M0 scale 2^(s - 127).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/hf/mxfp4.h"

namespace {

using moelab::hf::mxfp4_dequantize;

at::Tensor bytes(const std::vector<uint8_t>& v, std::vector<int64_t> shape) {
  return at::tensor(std::vector<int64_t>(v.begin(), v.end()), at::kLong).to(at::kByte).view(shape);
}

TEST(Mxfp4, EveryCodeDecodesToItsE2M1ValueAtScaleOne) {
  // Byte j holds code 2j (low nibble) and code 2j+1 (high nibble): codes 0..15 in
  // order, then the same 16 codes again in bytes 8..15.
  std::vector<uint8_t> block;
  for (int rep = 0; rep < 2; ++rep)
    for (int j = 0; j < 8; ++j) block.push_back(uint8_t((2 * j) | ((2 * j + 1) << 4)));
  at::Tensor out = mxfp4_dequantize(bytes(block, {1, 16}), bytes({127}, {1}));  // 2^0
  // By hand: code = sign bit (8) | magnitude index; E2M1 magnitudes 0, 0.5 (subnormal
  // 0.1b), 1, 1.5, 2, 3, 4, 6.
  const std::vector<float> expected = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                       -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{32}));
  ASSERT_EQ(out.scalar_type(), at::kFloat);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i].item<float>(), expected[i % 16]) << "element " << i;
  EXPECT_TRUE(std::signbit(out[8].item<float>()));  // code 8 is -0
}

TEST(Mxfp4, TheScaleByteMultipliesTheWholeBlockByAPowerOfTwo) {
  // Two blocks of one row: 0x21 -> (code 1, code 2) = (0.5, 1.0); 0xF7 -> (code 7, code 15)
  // = (6, -6). Block 0 scale 128 (x2), block 1 scale 125 (x1/4); other bytes 0.
  std::vector<uint8_t> blocks(32, 0);
  blocks[0] = 0x21;
  blocks[15] = 0xF7;
  blocks[16] = 0xF7;
  blocks[31] = 0x21;
  at::Tensor out = mxfp4_dequantize(bytes(blocks, {1, 2, 16}), bytes({128, 125}, {1, 2}));
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 64}));
  std::vector<float> expected(64, 0.f);
  expected[0] = 1.0f, expected[1] = 2.0f;      // block 0, byte 0: 0.5*2, 1*2
  expected[30] = 12.0f, expected[31] = -12.0f;  // block 0, byte 15: 6*2, -6*2
  expected[32] = 1.5f, expected[33] = -1.5f;    // block 1, byte 0: 6/4, -6/4
  expected[62] = 0.125f, expected[63] = 0.25f;  // block 1, byte 15: 0.5/4, 1/4
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out[0][i].item<float>(), expected[i]) << "element " << i;
}

TEST(Mxfp4, ExpertTensorsDecodeRowByRow) {
  // [E=2, rows=3, G=1, 16]: expert e, row r, every byte (code r+1 low, code 8+e high),
  // scale 127 - e. Row r of expert e: alternating FP4[r+1] and FP4[8+e], times 2^-e.
  std::vector<uint8_t> blocks, scales;
  for (int e = 0; e < 2; ++e)
    for (int r = 0; r < 3; ++r) {
      scales.push_back(uint8_t(127 - e));
      for (int j = 0; j < 16; ++j) blocks.push_back(uint8_t((r + 1) | ((8 + e) << 4)));
    }
  at::Tensor out = mxfp4_dequantize(bytes(blocks, {2, 3, 1, 16}), bytes(scales, {2, 3, 1}));
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 3, 32}));
  const float fp4[] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f};
  for (int e = 0; e < 2; ++e)
    for (int r = 0; r < 3; ++r)
      for (int i = 0; i < 32; ++i)
        EXPECT_EQ(out[e][r][i].item<float>(), (i % 2 == 0 ? fp4[r + 1] : fp4[8 + e]) / (e ? 2.f : 1.f));
}

TEST(Mxfp4, MismatchedScalesAreRefused) {
  EXPECT_THROW(mxfp4_dequantize(bytes(std::vector<uint8_t>(32, 0), {2, 16}), bytes({127}, {1})), c10::Error);
}

}  // namespace
