#include "core/models/rope.h"

#include <cmath>

namespace moelab::models {

std::pair<at::Tensor, double> rope_inv_freq(const hf::ModelConfig& c, int64_t seq_len) {
  const auto& r = c.rope;
  const int64_t dim = static_cast<int64_t>(c.head_dim * r.partial_rotary_factor);
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  // base ** (arange(0, dim, 2) / dim), in float32 like transformers.
  at::Tensor pos_freqs = at::pow(r.theta, at::arange(0, dim, 2, f32) / double(dim));
  at::Tensor inv_freq = 1.0 / pos_freqs;
  double attention_scaling = 1.0;
  if (r.type == "linear") {
    inv_freq = inv_freq / r.factor;
  } else if (r.type == "llama3") {
    // Llama 3.1: long wavelengths divided by factor, short kept, smooth in between.
    const double old_ctx = double(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv_freq;
    at::Tensor llama = at::where(wavelen > low_wavelen, inv_freq / r.factor, inv_freq);
    at::Tensor smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * llama / r.factor + smooth * llama;
    at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = at::where(medium, smoothed, llama);
  } else if (r.type == "longrope") {
    // LongRoPE (_compute_longrope_parameters): each frequency divided by its factor, the
    // long ones once the sequence passes the pretraining length (transformers' Phi-3 through
    // its dynamic update; its Phimoe forward recomputes the short ones at every length, which
    // only differs past that length). Phimoe scales cos/sin by short_mscale / long_mscale.
    const bool is_long = seq_len > r.original_max_position_embeddings;
    const auto& ext = is_long ? r.long_factor : r.short_factor;
    inv_freq = 1.0 / (at::tensor(ext, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat) * pos_freqs);
    const auto& mscale = is_long ? r.long_mscale : r.short_mscale;
    if (mscale) {
      attention_scaling = *mscale;
    } else if (r.attention_factor) {
      attention_scaling = *r.attention_factor;
    } else if (r.factor > 1) {
      attention_scaling = std::sqrt(1 + std::log(r.factor) / std::log(double(r.original_max_position_embeddings)));
    }
  } else if (r.type == "yarn") {
    // YaRN (arXiv 2309.00071): interpolate low frequencies, extrapolate high ones,
    // with a linear ramp between the correction dims; cos/sin scaled by mscale.
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    if (r.attention_factor) {
      attention_scaling = *r.attention_factor;
    } else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0) {
      attention_scaling = get_mscale(r.factor, *r.mscale) / get_mscale(r.factor, *r.mscale_all_dim);
    } else {
      attention_scaling = get_mscale(r.factor, 1.0);
    }
    const double orig = double(r.original_max_position_embeddings);
    auto correction_dim = [&](double rot) {
      return (dim * std::log(orig / (rot * 2 * M_PI))) / (2 * std::log(r.theta));
    };
    double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
    if (r.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    at::Tensor ramp = at::clamp((at::arange(dim / 2, f32) - low) / (high - low), 0, 1);
    at::Tensor extrapolation_factor = 1 - ramp;
    at::Tensor inv_extra = 1.0 / pos_freqs, inv_inter = 1.0 / (r.factor * pos_freqs);
    inv_freq = inv_inter * (1 - extrapolation_factor) + inv_extra * extrapolation_factor;
  }
  return {inv_freq, attention_scaling};
}

std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& inv_freq, double attention_scaling, int64_t T,
                                               at::ScalarType dtype, at::Device device) {
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor freqs = at::arange(T, f32).unsqueeze(1) * inv_freq.to(device).unsqueeze(0);  // [T, A/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {(emb.cos() * attention_scaling).to(dtype), (emb.sin() * attention_scaling).to(dtype)};
}

at::Tensor apply_rope_interleaved(const at::Tensor& x, const at::Tensor& cos_TA, const at::Tensor& sin_TA) {
  const int64_t half = cos_TA.size(-1) / 2;
  at::Tensor cos = cos_TA.narrow(-1, 0, half), sin = sin_TA.narrow(-1, 0, half);
  // In the tables' dtype, cast back: Llama-4 (attn.rope_complex) keeps float32 tables.
  at::Tensor xc = x.to(cos.scalar_type());
  at::Tensor x1 = xc.slice(-1, 0, xc.size(-1), 2), x2 = xc.slice(-1, 1, xc.size(-1), 2);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1).to(x.scalar_type());
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos_TA, const at::Tensor& sin_TA) {
  const int64_t rot = cos_TA.size(-1);
  at::Tensor xr = rot == x.size(-1) ? x : x.narrow(-1, 0, rot);
  auto halves = xr.chunk(2, -1);
  at::Tensor rotated = at::cat({-halves[1], halves[0]}, -1);
  at::Tensor out = xr * cos_TA + rotated * sin_TA;
  if (rot == x.size(-1)) return out;
  return at::cat({out, x.narrow(-1, rot, x.size(-1) - rot)}, -1);
}

}  // namespace moelab::models
