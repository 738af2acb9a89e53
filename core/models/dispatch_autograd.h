// The dispatcher's moves as autograd operations, so that a backward pass crosses
// processes: the gradient of to_experts is to_tokens of the gradient, and the other
// way round (each move is a permutation plus an exchange, the adjoint of the other).
//
// Collectives in backward must run in the same order on every rank. With `track`
// set, a graph node is recorded even when the input needs no gradient (e.g. the first
// MoE layer, or a rank with no tokens), so that every rank's graph has the same nodes
// and autograd's engine (which runs ready nodes latest-created first) reaches them
// in the same order everywhere: layer by layer, from the last.
#pragma once

#include <memory>

#include "core/models/expert_dispatch.h"

namespace moelab::models {

// `dispatcher` must outlive the backward pass (the model owns it); the plan is kept
// alive by the graph.
at::Tensor move_to_experts(ExpertDispatcher& dispatcher, const std::shared_ptr<const DispatchedTokens>& plan,
                           const at::Tensor& rows_RC, bool track);
at::Tensor move_to_tokens(ExpertDispatcher& dispatcher, const std::shared_ptr<const DispatchedTokens>& plan,
                          const at::Tensor& rows_MC, bool track);

}  // namespace moelab::models
