// Moving routed tokens to the experts that compute them, and the results back
// (the shape of Megatron-Core's token dispatcher: one object, one contract).
//
// The MoE block routes its N tokens, then:
//   plan()        decides where each of the N*K (token, slot) rows goes (collective:
//                 row counts and each row's gate and tag travel, hidden states do not);
//   to_experts()  moves rows, in this process's expert-sorted order (SortedRows), to
//                 the processes owning their experts: there they come out grouped by
//                 local expert (rows_per_local_expert[i] rows for local expert i);
//   to_tokens()   is its exact inverse: expert-side rows back to the tokens' process,
//                 in expert-sorted order again.
// to_experts and to_tokens are permutations plus exchanges, each the adjoint of the
// other, so the gradient of one is the other (core/models/dispatch_autograd.h): that is
// how the backward pass crosses ranks. The gate weighting and the sum over a token's
// K experts happen on the tokens' process (weighted_scatter_add), so gates stay
// differentiable.
//
// LocalDispatcher does this in one process (a stable sort by expert; moves are the
// identity). The cluster/ all-to-all dispatcher sends rows to the ranks owning their
// experts. Either way each expert sees its rows in (source rank, token) order, so
// results do not depend on how experts are placed.
#pragma once

#include <ATen/ATen.h>

#include <any>
#include <cstdint>
#include <vector>

namespace moelab::models {

// This process's (token, slot) rows sorted by expert id (stable: token order within
// an expert). R = N*K rows, less the skipped ones: a slot whose expert id is
// num_experts (one past the last) is left out, so no expert computes it and it adds
// nothing to its token (NAEE dynamic skipping; transformers' experts loop treats
// that id the same way).
struct SortedRows {
  at::Tensor order;      // [R] int64 indices into the flattened (token, slot) pairs
  at::Tensor token_of;   // [R] int64 token index of each sorted row
  at::Tensor expert_of;  // [R] int64 global expert id of each sorted row
  at::Tensor gate_of;    // [R] gate weight of each sorted row (compute dtype; differentiable)
  at::Tensor counts_E;   // [E] int64 (CPU) rows per expert
};
SortedRows sort_rows_by_expert(const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK, int64_t num_experts);

// out[token_of[i]] += y[i] * gate_of[i], summed in row order. y_RD in SortedRows order.
at::Tensor weighted_scatter_add(const at::Tensor& y_RD, const SortedRows& rows, int64_t num_tokens);

struct DispatchedTokens {
  SortedRows rows;        // this process's rows (tokens' side)
  int64_t num_tokens = 0; // N of this process
  // Expert side: M rows grouped by local expert.
  at::Tensor gate_M;      // the gate weight of each row (compute dtype, no gradient)
  at::Tensor tag_M;       // int64 per row: the source token's index in its process's N
                          // tokens; with several processes, + source_rank * 2^40
  std::vector<int64_t> rows_per_local_expert;
  std::any state;         // what the moves need; opaque to the caller
  int64_t num_expert_rows() const {
    int64_t m = 0;
    for (int64_t n : rows_per_local_expert) m += n;
    return m;
  }
};

class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  // The experts of `layer` computed here: global ids [first, first + count).
  virtual int64_t first_local_expert(int64_t layer, int64_t num_experts) const = 0;
  virtual int64_t num_local_experts(int64_t layer, int64_t num_experts) const = 0;
  // topk_ids_NK: global expert ids; topk_w_NK: gate weights (compute dtype).
  virtual DispatchedTokens plan(int64_t layer, int64_t num_experts, const at::Tensor& topk_ids_NK,
                                const at::Tensor& topk_w_NK) = 0;
  // [R, C] rows in rows order -> [M, C] rows of the local experts (any C, any dtype).
  virtual at::Tensor to_experts(const at::Tensor& rows_RC, const DispatchedTokens& d) = 0;
  // [M, C] -> [R, C]: the inverse of to_experts.
  virtual at::Tensor to_tokens(const at::Tensor& rows_MC, const DispatchedTokens& d) = 0;
};

// Single process: every expert is local.
class LocalDispatcher : public ExpertDispatcher {
 public:
  int64_t first_local_expert(int64_t, int64_t) const override { return 0; }
  int64_t num_local_experts(int64_t, int64_t num_experts) const override { return num_experts; }
  DispatchedTokens plan(int64_t layer, int64_t num_experts, const at::Tensor& topk_ids_NK,
                        const at::Tensor& topk_w_NK) override;
  at::Tensor to_experts(const at::Tensor& rows_RC, const DispatchedTokens&) override { return rows_RC; }
  at::Tensor to_tokens(const at::Tensor& rows_MC, const DispatchedTokens&) override { return rows_MC; }
};

}  // namespace moelab::models
