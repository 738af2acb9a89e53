// Expert-parallel token dispatch/combine over a Communicator (all-to-all-v).
//
// plan: sort this rank's (token, slot) rows by expert -> exchange per-expert row
// counts -> exchange each row's gate weight and tag -> the regrouping of received
// rows by local expert (sources in rank order).
// to_experts: exchange the rows, then regroup. to_tokens: undo the regrouping, then
// send the rows back (the same exchange, transposed).
//
// Every rank must call plan and both moves for every MoE layer of every step (and
// in the same order in backward), also with zero tokens (forward with B = 0), since
// the exchanges are collective.
#pragma once

#include <memory>

#include "cluster/communicator.h"
#include "cluster/expert_placement.h"
#include "core/models/expert_dispatch.h"

namespace moelab::cluster {

class AllToAllDispatcher : public models::ExpertDispatcher {
 public:
  explicit AllToAllDispatcher(std::shared_ptr<Communicator> comm)
      : comm_(std::move(comm)), placement_(comm_->rank(), comm_->size()) {}

  int64_t first_local_expert(int64_t, int64_t num_experts) const override {
    return placement_.first_local(num_experts);
  }
  int64_t num_local_experts(int64_t, int64_t num_experts) const override { return placement_.num_local(num_experts); }
  models::DispatchedTokens plan(int64_t layer, int64_t num_experts, const at::Tensor& topk_ids_NK,
                                const at::Tensor& topk_w_NK) override;
  at::Tensor to_experts(const at::Tensor& rows_RC, const models::DispatchedTokens& d) override;
  at::Tensor to_tokens(const at::Tensor& rows_MC, const models::DispatchedTokens& d) override;

  const ExpertPlacement& placement() const { return placement_; }

 private:
  std::shared_ptr<Communicator> comm_;
  ExpertPlacement placement_;
};

}  // namespace moelab::cluster
