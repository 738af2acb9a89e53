// MXFP4 weights as the released gpt-oss checkpoints store their experts (OCP
// Microscaling Formats v1.0; transformers integrations/mxfp4.py, FP4_VALUES and
// _convert_moe_packed_tensors): values in blocks of 32 sharing one scale. A block is
// 16 bytes, two FP4 E2M1 codes per byte, the low nibble first (element 2j is byte j &
// 0x0F, element 2j+1 is byte j >> 4); a code is a sign bit and a 3-bit magnitude index
// into {0, 0.5, 1, 1.5, 2, 3, 4, 6}. The block's scale is one E8M0 byte s: the block's
// values are multiplied by 2^(s - 127).
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace moelab::hf {

// The 16 FP4 E2M1 values by code (transformers FP4_VALUES).
inline constexpr std::array<float, 16> kFp4Values = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                                     -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// blocks [..., G, 16] uint8 and scales [..., G] uint8 -> float32 [..., G * 32]: the row of
// G blocks decoded in order. Computed as transformers does (table value, then
// ldexp by s - 127), so every value is exact. Throws c10::Error on mismatched shapes
// or dtypes (callers check checkpoint shapes first and name the file).
at::Tensor mxfp4_dequantize(const at::Tensor& blocks, const at::Tensor& scales);

}  // namespace moelab::hf
