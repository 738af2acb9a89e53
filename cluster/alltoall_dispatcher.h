// Expert-parallel token dispatch/combine over a Communicator (all-to-all-v).
//
// dispatch: sort this rank's (token, slot) rows by expert -> exchange per-expert row
// counts -> exchange the rows (hidden states, then gate weight and tag) -> regroup
// the received rows by local expert (sources in rank order).
// combine: undo the regrouping -> send results back -> gate-weighted sum per token.
//
// Every rank must call dispatch/combine for every MoE layer of every step, also
// with zero tokens (forward with B = 0), since the exchanges are collective.
#pragma once

#include <memory>

#include "cluster/communicator.h"
#include "cluster/expert_placement.h"
#include "models/expert_dispatch.h"

namespace moelab::cluster {

class AllToAllDispatcher : public models::ExpertDispatcher {
 public:
  explicit AllToAllDispatcher(std::shared_ptr<Communicator> comm)
      : comm_(std::move(comm)), placement_(comm_->rank(), comm_->size()) {}

  int64_t first_local_expert(int64_t, int64_t num_experts) const override {
    return placement_.first_local(num_experts);
  }
  int64_t num_local_experts(int64_t, int64_t num_experts) const override { return placement_.num_local(num_experts); }
  models::DispatchedTokens dispatch(int64_t layer, int64_t num_experts, const at::Tensor& x_ND,
                                    const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK) override;
  at::Tensor combine(const at::Tensor& y_MD, const models::DispatchedTokens& d) override;

  const ExpertPlacement& placement() const { return placement_; }

 private:
  std::shared_ptr<Communicator> comm_;
  ExpertPlacement placement_;
};

}  // namespace moelab::cluster
