// The decoder forward over a key/value cache (core/models/kv_cache.h): the layers of forward()
// (decoder_layer_forward) on the new tokens only, with RoPE at each token's own position
// and masks over the cached keys.
#include <ATen/core/grad_mode.h>

#include "core/common/error.h"
#include "core/models/blocks.h"
#include "core/models/kv_cache.h"
#include "core/models/layer_forward.h"
#include "core/models/rope.h"

namespace moelab::models {
namespace {

// [B, 1, T, keys] bool: new token t of sequence b sits at q = past[b] + t and sees the
// slots k <= q of its own sequence (k < past[b] + lengths[b]), within the sliding window
// (k > q - window) and in its Llama-4 chunk (k / chunk == q / chunk), as build_mask in
// forward.cpp. A padding row (t >= lengths[b]) sees all of its sequence's slots, so that
// it never has an empty row (its output is never read).
at::Tensor cached_mask(const KvStep& s, int64_t T, std::optional<int64_t> window, std::optional<int64_t> chunk,
                       at::Device device) {
  auto i64 = at::TensorOptions().dtype(at::kLong);
  const int64_t B = int64_t(s.past.size());
  at::Tensor past = at::tensor(s.past, i64).to(device).view({B, 1, 1, 1});
  at::Tensor len = at::tensor(s.lengths, i64).to(device).view({B, 1, 1, 1});
  at::Tensor t = at::arange(T, i64.device(device)).view({1, 1, T, 1});
  at::Tensor k = at::arange(s.keys, i64.device(device)).view({1, 1, 1, s.keys});
  at::Tensor q = past + t, end = past + len;
  at::Tensor own = k < end;
  at::Tensor allowed = own.logical_and(k <= q);
  if (window) allowed = allowed.logical_and(k > q - *window);
  if (chunk) allowed = allowed.logical_and(at::floor_divide(k, *chunk) == at::floor_divide(q, *chunk));
  return allowed.logical_or(own.logical_and(t >= len));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> KvStep::append(int64_t layer, const at::Tensor& k, const at::Tensor& v) const {
  at::Tensor& ck = cache->k[layer];
  at::Tensor& cv = cache->v[layer];
  const int64_t B = k.size(0);
  if (!ck.defined() || ck.size(2) < keys) {
    // Allocate (or regrow) the slots: the reserve at first, twice the need when it is short.
    const int64_t slots = std::max(keys, ck.defined() ? 2 * keys : cache->reserve);
    at::Tensor nk = at::zeros({B, k.size(1), slots, k.size(3)}, k.options());
    at::Tensor nv = at::zeros({B, v.size(1), slots, v.size(3)}, v.options());
    if (ck.defined()) {
      nk.narrow(2, 0, ck.size(2)).copy_(ck);
      nv.narrow(2, 0, cv.size(2)).copy_(cv);
    }
    ck = nk;
    cv = nv;
  }
  for (int64_t b = 0; b < B; ++b) {
    ck[b].narrow(1, past[b], lengths[b]).copy_(k[b].narrow(1, 0, lengths[b]));
    cv[b].narrow(1, past[b], lengths[b]).copy_(v[b].narrow(1, 0, lengths[b]));
  }
  return {ck.narrow(2, 0, keys), cv.narrow(2, 0, keys)};
}

void KvCache::keep(const std::vector<int64_t>& rows) {
  if (rows.size() == lengths.size()) return;
  std::vector<int64_t> kept;
  for (int64_t r : rows) kept.push_back(lengths.at(r));
  lengths = kept;
  for (auto* layers : {&k, &v, &conv_state, &delta_state})
    for (auto& t : *layers)
      if (t.defined()) t = t.index_select(0, at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(t.device()));
}

int64_t KvCache::bytes() const {
  int64_t n = 0;
  for (const auto* layers : {&k, &v, &conv_state, &delta_state})
    for (const auto& t : *layers)
      if (t.defined()) n += t.numel() * int64_t(t.element_size());
  return n;
}

at::Tensor forward_cached(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                          KvCache& cache) {
  const auto& c = m.config;
  at::NoGradGuard no_grad;
  TORCH_CHECK(input_ids_BT.dim() == 2, "input_ids must be [B, T]");
  const int64_t B = input_ids_BT.size(0), T = input_ids_BT.size(1);
  TORCH_CHECK(int64_t(lengths.size()) == B, "one length per sequence");
  if (B == 0) {  // no tokens here: serve this rank's experts for the step
    forward(m, input_ids_BT, lengths);
    return at::empty({0, c.vocab_size}, at::TensorOptions().dtype(m.dtype).device(m.device));
  }
  if (cache.lengths.empty()) {
    cache.lengths.assign(B, 0);
    cache.k.assign(c.num_hidden_layers, at::Tensor());
    cache.v.assign(c.num_hidden_layers, at::Tensor());
    cache.conv_state.assign(c.num_hidden_layers, at::Tensor());
    cache.delta_state.assign(c.num_hidden_layers, at::Tensor());
  }
  TORCH_CHECK(int64_t(cache.lengths.size()) == B, "the batch must have the cache's sequences");
  at::Tensor ids = input_ids_BT.to(m.device);
  if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size)
    throw InputError("input_ids", "token id out of range [0, " + std::to_string(c.vocab_size) + ")");

  KvStep step;
  step.cache = &cache;
  step.past = cache.lengths;
  step.lengths = lengths;
  std::vector<int64_t> pos, valid, last;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(lengths[b] >= 1 && lengths[b] <= T, "sequence lengths must be in [1, T]");
    step.keys = std::max(step.keys, step.past[b] + lengths[b]);
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) pos.push_back(std::min(step.past[b] + t, step.keys - 1));
    for (int64_t t = 0; t < lengths[b]; ++t) valid.push_back(b * T + t);
    last.push_back(b * T + lengths[b] - 1);
  }
  auto i64 = at::TensorOptions().dtype(at::kLong);
  step.positions_BT = at::tensor(pos, i64).view({B, T}).to(m.device);

  BatchContext ctx;
  ctx.B = B;
  ctx.T = T;
  ctx.valid_N = at::tensor(valid, i64).to(m.device);
  ctx.kv = &step;
  // The tables of forward() over the keys' positions, each token's row picked ([B, 1, T, A]).
  auto [inv_freq, scaling] = c.rope.type == "longrope" ? rope_inv_freq(c, step.keys)
                                                       : std::make_pair(m.rope_inv_freq, m.rope_attention_scaling);
  auto [cos_SA, sin_SA] = rope_cos_sin(inv_freq, scaling, step.keys, c.attn.rope_complex ? at::kFloat : m.dtype, m.device);
  const at::Tensor flat_pos = step.positions_BT.reshape(-1);
  ctx.cos_TA = cos_SA.index_select(0, flat_pos).view({B, 1, T, -1});
  ctx.sin_TA = sin_SA.index_select(0, flat_pos).view({B, 1, T, -1});
  ctx.full_mask = cached_mask(step, T, std::nullopt, std::nullopt, m.device);
  ctx.window_mask = c.attn.sliding_window ? cached_mask(step, T, c.attn.sliding_window, std::nullopt, m.device) : ctx.full_mask;
  if (c.attn.chunk_size) ctx.chunk_mask = cached_mask(step, T, std::nullopt, c.attn.chunk_size, m.device);

  at::Tensor h = at::embedding(m.embed_VD, ids);  // [B, T, D]
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) h = decoder_layer_forward(m, m.layers[l], l, h, ctx, nullptr);
  at::Tensor last_BD = h.reshape({B * T, c.hidden_size}).index_select(0, at::tensor(last, i64).to(m.device));
  for (int64_t b = 0; b < B; ++b) cache.lengths[b] += lengths[b];
  return output_logits(m, last_BD);
}

}  // namespace moelab::models
