// The decoder forward: embed, then per layer attention and MoE (or dense MLP) with
// pre-norm residuals, final norm, lm_head. Padding tokens take part in attention
// as keys of nobody (masked) and never reach the experts: the MoE blocks see only
// the N valid tokens, so routing statistics are never polluted by padding. Shared
// experts (Qwen2-MoE, DeepSeek) are added after the routed output is observed.
#include "core/common/error.h"
#include "core/models/blocks.h"
#include "core/models/layer_forward.h"
#include "core/models/rope.h"

namespace moelab::models {
namespace {

// [B, 1, T, T] bool: causal, keys within the sequence's length, inside the sliding
// window when the config has one (key > query - window), and in the query's chunk under
// Llama-4's chunked attention (key / chunk == query / chunk; sequences are right-padded,
// so positions start at 0 as transformers' chunked_overlay counts them).
at::Tensor build_mask(const std::vector<int64_t>& lengths, int64_t T, std::optional<int64_t> window,
                      at::Device device, std::optional<int64_t> chunk = std::nullopt) {
  auto i64 = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor q = at::arange(T, i64).unsqueeze(1), k = at::arange(T, i64).unsqueeze(0);
  at::Tensor allowed = k <= q;
  if (window) allowed = allowed.logical_and(k > q - *window);
  at::Tensor len = at::tensor(lengths, at::TensorOptions().dtype(at::kLong)).to(device).view({-1, 1, 1, 1});
  at::Tensor mask = allowed.view({1, 1, T, T}).logical_and(k.view({1, 1, 1, T}) < len);
  if (!chunk) return mask;
  // A padding query keeps its unchunked row: a chunk wholly past the sequence's end would
  // leave it no key at all (NaN rows, which masked keys still multiply by 0 in the next layer).
  at::Tensor in_chunk = (at::floor_divide(k, *chunk) == at::floor_divide(q, *chunk)).view({1, 1, T, T});
  return mask.logical_and(in_chunk.logical_or(q.view({1, 1, T, 1}) >= len));
}

}  // namespace

BatchContext batch_context(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths) {
  const auto& c = m.config;
  BatchContext ctx;
  ctx.B = input_ids_BT.size(0);
  ctx.T = input_ids_BT.size(1);
  const int64_t B = ctx.B, T = ctx.T;
  for (int64_t len : lengths) TORCH_CHECK(len >= 1 && len <= T, "sequence lengths must be in [1, T]");
  // valid_N: flat indices of the non-padding positions, in batch order.
  std::vector<int64_t> valid;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < lengths[b]; ++t) valid.push_back(b * T + t);
  ctx.valid_N = at::tensor(valid, at::TensorOptions().dtype(at::kLong)).to(m.device);
  // LongRoPE changes its frequencies with the sequence length; the others are fixed.
  // Llama-4 (attn.rope_complex) rotates in float32 from float32 tables (apply_rotary_emb).
  auto [inv_freq, scaling] = c.rope.type == "longrope" ? rope_inv_freq(c, T)
                                                       : std::make_pair(m.rope_inv_freq, m.rope_attention_scaling);
  auto [cos_TA, sin_TA] = rope_cos_sin(inv_freq, scaling, T, c.attn.rope_complex ? at::kFloat : m.dtype, m.device);
  ctx.cos_TA = cos_TA;
  ctx.sin_TA = sin_TA;
  // No padding: plain causal attention needs no mask (undefined: attention_forward
  // asks scaled_dot_product_attention for is_causal, which skips the masked blocks).
  bool padded = false;
  for (int64_t len : lengths) padded = padded || len != T;
  if (padded) ctx.full_mask = build_mask(lengths, T, std::nullopt, m.device);
  ctx.window_mask = c.attn.sliding_window ? build_mask(lengths, T, c.attn.sliding_window, m.device) : ctx.full_mask;
  if (c.attn.chunk_size) ctx.chunk_mask = build_mask(lengths, T, std::nullopt, m.device, c.attn.chunk_size);
  return ctx;
}

at::Tensor valid_token_ids(const at::Tensor& input_ids_BT, const BatchContext& ctx) {
  return input_ids_BT.to(ctx.valid_N.device()).reshape(-1).index_select(0, ctx.valid_N).cpu();
}

at::Tensor decoder_layer_forward(const MoeModel& m, const LayerWeights& L, int64_t l, const at::Tensor& h_BTD,
                                 const BatchContext& ctx, MoeObserver* observer) {
  const auto& c = m.config;
  const int64_t B = ctx.B, T = ctx.T, D = c.hidden_size;
  const at::Tensor& mask = c.attn.uses_chunked_attention(l) ? ctx.chunk_mask
                           : c.attn.uses_sliding_window(l)  ? ctx.window_mask
                                                            : ctx.full_mask;
  at::Tensor h = h_BTD + attention_forward(L.attn, c, decoder_norm(h_BTD, L.attn_norm_D, L.attn_norm_bias_D, c),
                                           ctx.cos_TA, ctx.sin_TA, mask, l, ctx.kv);
  // Without padding every position is valid: plain views and adds instead of
  // gathering and scattering the rows (the same values).
  const bool all_valid = ctx.valid_N.size(0) == B * T;
  const auto valid_rows = [&](const at::Tensor& t_BTD) {
    at::Tensor flat = t_BTD.reshape({B * T, D});
    return all_valid ? flat : flat.index_select(0, ctx.valid_N);
  };
  at::Tensor x_ND = valid_rows(decoder_norm(h, L.ffn_norm_D, L.ffn_norm_bias_D, c));
  at::Tensor y_ND = L.moe ? moe_forward(*L.moe, c, x_ND, l, *m.dispatcher, observer) : dense_mlp_forward(*L.mlp, c, x_ND);
  if (observer && L.moe) observer->on_moe_output(l, valid_rows(h.detach()), y_ND.detach());
  if (L.shared) y_ND = y_ND + shared_expert_forward(*L.shared, c, x_ND);  // never routed, never observed
  if (all_valid) return h + y_ND.reshape({B, T, D});
  return h.reshape({B * T, D}).index_add(0, ctx.valid_N, y_ND).reshape({B, T, D});
}

at::Tensor serve_layer_experts(const MoeModel& m, const LayerWeights& L, int64_t l, MoeObserver* observer) {
  at::Tensor none = at::empty({0, m.config.hidden_size}, at::TensorOptions().dtype(m.dtype).device(m.device));
  at::Tensor y = moe_forward(*L.moe, m.config, none, l, *m.dispatcher, observer);
  if (observer) observer->on_moe_output(l, none, y.detach());
  return y;
}

namespace {

// Embedding and every decoder layer (observed); the last layer's output [B, T, D].
at::Tensor decoder_forward(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                           MoeObserver* observer) {
  const auto& c = m.config;
  TORCH_CHECK(input_ids_BT.dim() == 2, "input_ids must be [B, T]");
  const int64_t B = input_ids_BT.size(0), T = input_ids_BT.size(1);
  TORCH_CHECK(int64_t(lengths.size()) == B, "one length per sequence");
  if (B == 0) {
    // No tokens of our own: serve our experts to the other ranks, layer by layer.
    // When gradients are recorded, the (empty) result still depends on every layer's
    // output, so that backward runs this rank's share of every layer's exchanges.
    if (observer) observer->on_batch(at::empty({0}, at::kLong));
    at::Tensor anchor;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      if (!m.layers[l].moe) continue;
      at::Tensor y = serve_layer_experts(m, m.layers[l], l, observer);
      if (y.requires_grad()) anchor = anchor.defined() ? anchor + y.sum() : y.sum();
    }
    at::Tensor h = at::empty({0, T, c.hidden_size}, at::TensorOptions().dtype(m.dtype).device(m.device));
    return anchor.defined() ? h + anchor : h;
  }
  at::Tensor ids = input_ids_BT.to(m.device);
  if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size))
    throw InputError("input_ids", "token id out of range [0, " + std::to_string(c.vocab_size) + ")");
  const BatchContext ctx = batch_context(m, ids, lengths);
  if (observer) observer->on_batch(valid_token_ids(ids, ctx));
  at::Tensor h = at::embedding(m.embed_VD, ids);  // [B, T, D]
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) h = decoder_layer_forward(m, m.layers[l], l, h, ctx, observer);
  return h;
}

}  // namespace

at::Tensor forward(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                   MoeObserver* observer) {
  const auto& c = m.config;
  at::Tensor h = decoder_forward(m, input_ids_BT, lengths, observer);
  if (h.size(0) == 0) {  // serving experts only: empty logits (still tied to the exchanges)
    at::Tensor logits = at::empty({0, h.size(1), c.vocab_size}, at::TensorOptions().dtype(m.dtype).device(m.device));
    return h.requires_grad() ? logits + h.sum() : logits;
  }
  return output_logits(m, h);
}

at::Tensor output_logits(const MoeModel& m, const at::Tensor& h) {
  at::Tensor x = decoder_norm(h, m.final_norm_D, m.final_norm_bias_D, m.config);
  return m.lm_head_bias_V.defined() ? at::linear(x, m.lm_head_VD, m.lm_head_bias_V) : at::linear(x, m.lm_head_VD);
}

void observe_forward(const MoeModel& m, const at::Tensor& input_ids_BT, const std::vector<int64_t>& lengths,
                     MoeObserver& observer) {
  decoder_forward(m, input_ids_BT, lengths, &observer);
}

}  // namespace moelab::models
