// Gradient statistics for the MC-Suite gradient criteria (EGS, EGE, EGO, EGN;
// "Finding Fantastic Experts in MoEs", arXiv 2504.05586).
//
// G_j is the gradient of the calibration loss with respect to expert j's weights
// (gate, up and down matrices: 3 F D values). The loss is the mean next-token
// cross-entropy over every target of the calibration set (all ranks' batches; the
// sum of per-batch sums divided by the total target count, so G_j does not depend
// on the batching or the rank count). One backward per batch; the gradients
// accumulate in the experts' weights on the ranks that own them, having crossed
// ranks through the dispatcher's differentiable moves (core/models/dispatch_autograd.h).
// Only expert weights require gradients: attention, norms and routers are constants.
#pragma once

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"

namespace moelab::jobs {

// Marks the routed experts' weights of every MoE layer as requiring gradients
// (and clears old ones). Call before the forward/backward pass.
void enable_expert_gradients(models::MoeModel& model);
// Back to constants: requires_grad off, gradients dropped.
void disable_expert_gradients(models::MoeModel& model);

// After the pass: forward + backward of `loss_scale` * next-token NLL sum of one batch.
// Every rank must call it for every step (also with B = 0).
void backward_next_token_loss(const at::Tensor& logits_BTV, const at::Tensor& ids_BT,
                              const std::vector<int64_t>& lengths, double loss_scale);

// From the accumulated gradients, per MoE layer (collective): ||G_j||^2, the Gram
// matrix <G_j, G_k>, per-channel sums and squared sums (channel c = gate row c, up
// row c, down column c: 3 D values) and the count of values outside their
// channel's mean +- 3 std. Fills the grad_* fields of `layers` (MoE layers in order).
void collect_gradient_stats(const models::MoeModel& model, cluster::Communicator& comm,
                            std::vector<results::LayerStats>& layers);

}  // namespace moelab::jobs
