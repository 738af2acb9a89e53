#include "core/hf/mxfp4.h"

namespace moelab::hf {

at::Tensor mxfp4_dequantize(const at::Tensor& blocks, const at::Tensor& scales) {
  TORCH_CHECK(blocks.scalar_type() == at::kByte && scales.scalar_type() == at::kByte,
              "MXFP4 blocks and scales must be uint8");
  TORCH_CHECK(blocks.dim() >= 2 && blocks.size(-1) == 16, "MXFP4 blocks must be [..., G, 16]");
  TORCH_CHECK(blocks.sizes().slice(0, blocks.dim() - 1) == scales.sizes(), "MXFP4 scales must be blocks' shape less 16");
  at::Tensor lut = at::tensor(at::ArrayRef<float>(kFp4Values.data(), kFp4Values.size()), at::kFloat).to(blocks.device());
  at::Tensor b = blocks.contiguous();
  at::Tensor lo = at::bitwise_and(b, 0x0F).to(at::kLong), hi = at::bitwise_right_shift(b, 4).to(at::kLong);
  // [..., G, 16, 2] -> [..., G, 32]: low nibble first within each byte.
  at::Tensor values = at::stack({lut.index_select(0, lo.reshape(-1)).view(lo.sizes()),
                                 lut.index_select(0, hi.reshape(-1)).view(hi.sizes())},
                                -1)
                          .flatten(-2);
  at::Tensor exponent = (scales.to(at::kInt) - 127).unsqueeze(-1);
  return at::ldexp(values, exponent).flatten(-2);
}

}  // namespace moelab::hf
