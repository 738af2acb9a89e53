// Moving routed tokens to the experts that compute them, and the results back.
//
// The MoE block routes its N tokens, then calls dispatch(): the N*K (token, slot)
// rows come back as x_MD, the rows THIS process computes, grouped by local expert
// (rows_per_local_expert[i] rows for local expert i, in order). After computing
// y_MD (same order, before gate weighting), combine() returns, for the N tokens
// that this process routed, the gate-weighted sum of their K expert outputs.
//
// LocalDispatcher does this in one process (a stable sort by expert). The cluster/
// all-to-all dispatcher sends rows to the ranks owning their experts. Either way,
// each expert sees its rows in (source rank, token) order, so results do not
// depend on how experts are placed.
#pragma once

#include <ATen/ATen.h>

#include <any>
#include <cstdint>
#include <vector>

namespace moelab::models {

struct DispatchedTokens {
  at::Tensor x_MD;     // rows for the local experts, grouped by local expert
  at::Tensor gate_M;   // the gate weight of each row (compute dtype)
  at::Tensor tag_M;    // int64 per row: the source token's index in its process's N
                       // tokens; with several processes, + source_rank * 2^40
  std::vector<int64_t> rows_per_local_expert;
  std::any state;      // what combine() needs; opaque to the caller
};

class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  // The experts of `layer` computed here: global ids [first, first + count).
  virtual int64_t first_local_expert(int64_t layer, int64_t num_experts) const = 0;
  virtual int64_t num_local_experts(int64_t layer, int64_t num_experts) const = 0;
  // topk_ids_NK: global expert ids; topk_w_NK: gate weights (compute dtype).
  virtual DispatchedTokens dispatch(int64_t layer, int64_t num_experts, const at::Tensor& x_ND,
                                    const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK) = 0;
  // y_MD: expert outputs in x_MD's order. Returns [N, D] for this process's tokens.
  virtual at::Tensor combine(const at::Tensor& y_MD, const DispatchedTokens& d) = 0;
};

// Single process: every expert is local.
class LocalDispatcher : public ExpertDispatcher {
 public:
  int64_t first_local_expert(int64_t, int64_t) const override { return 0; }
  int64_t num_local_experts(int64_t, int64_t num_experts) const override { return num_experts; }
  DispatchedTokens dispatch(int64_t layer, int64_t num_experts, const at::Tensor& x_ND, const at::Tensor& topk_ids_NK,
                            const at::Tensor& topk_w_NK) override;
  at::Tensor combine(const at::Tensor& y_MD, const DispatchedTokens& d) override;
};

// Shared by every dispatcher: the (token, slot) rows of this process sorted by
// expert id (stable: token order within an expert).
struct SortedRows {
  at::Tensor order;     // [N*K] indices into the flattened (token, slot) pairs
  at::Tensor token_of;  // [N*K] token index of each sorted row
  at::Tensor gate_of;   // [N*K] gate weight of each sorted row
  at::Tensor counts_E;  // [E] int64 (CPU) rows per expert
};
SortedRows sort_rows_by_expert(const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK, int64_t num_experts);

// out[token_of[i]] += y[i] * gate_of[i], summed in row order.
at::Tensor weighted_scatter_add(const at::Tensor& y_RD, const SortedRows& rows, int64_t num_tokens);

}  // namespace moelab::models
