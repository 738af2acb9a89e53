#include "runner/jobs/calibrate/expert_gradients.h"

#include "core/models/next_token_loss.h"

namespace moelab::jobs {

void enable_expert_gradients(models::MoeModel& model) {
  for (auto& L : model.layers) {
    if (!L.moe) continue;
    for (at::Tensor* w : {&L.moe->gate_up_EFD, &L.moe->down_EDF}) {
      w->requires_grad_(true);
      if (w->grad().defined()) w->mutable_grad() = at::Tensor();
    }
  }
}

void disable_expert_gradients(models::MoeModel& model) {
  for (auto& L : model.layers) {
    if (!L.moe) continue;
    for (at::Tensor* w : {&L.moe->gate_up_EFD, &L.moe->down_EDF}) {
      if (w->grad().defined()) w->mutable_grad() = at::Tensor();
      w->requires_grad_(false);
    }
  }
}

void backward_next_token_loss(const at::Tensor& logits_BTV, const at::Tensor& ids_BT,
                              const std::vector<int64_t>& lengths, double loss_scale) {
  at::Tensor loss = models::next_token_nll_sum(logits_BTV, ids_BT, lengths) * loss_scale;
  loss.backward();
}

namespace {

// [L, F, 3D] float64: each local expert's gradient values grouped by channel.
at::Tensor channel_values(const models::ExpertWeights& w) {
  const int64_t L = w.num_local(), F = w.down_EDF.size(2), D = w.down_EDF.size(1);
  at::Tensor gu = w.gate_up_EFD.grad(), dn = w.down_EDF.grad();
  // An expert no token reached on any rank has no gradient: zeros.
  if (!gu.defined()) gu = at::zeros({L, 2 * F, D}, w.gate_up_EFD.options().requires_grad(false));
  if (!dn.defined()) dn = at::zeros({L, D, F}, w.down_EDF.options().requires_grad(false));
  gu = gu.detach().to(at::kCPU, at::kDouble);
  dn = dn.detach().to(at::kCPU, at::kDouble);
  return at::cat({gu.narrow(1, 0, F), gu.narrow(1, F, F), dn.transpose(1, 2)}, 2);  // [L, F, 3D]
}

}  // namespace

void collect_gradient_stats(const models::MoeModel& model, cluster::Communicator& comm,
                            std::vector<results::LayerStats>& layers) {
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  size_t slot = 0;
  for (const auto& L : model.layers) {
    if (!L.moe) continue;
    const models::ExpertWeights& w = *L.moe;
    results::LayerStats& s = layers.at(slot++);
    const int64_t E = w.num_experts(), F = w.down_EDF.size(2), first = w.first_local, n_local = w.num_local();
    at::Tensor v_LFC = channel_values(w);
    const int64_t C = v_LFC.size(2);
    at::Tensor flat_LX = v_LFC.reshape({n_local, F * C});

    s.grad_sq_norm_E = at::zeros({E}, f64);
    s.grad_sq_norm_E.narrow(0, first, n_local).copy_(flat_LX.pow(2).sum(1));
    s.grad_channel_sum_EF = at::zeros({E, F}, f64);
    s.grad_channel_sum_EF.narrow(0, first, n_local).copy_(v_LFC.sum(2));
    s.grad_channel_sq_sum_EF = at::zeros({E, F}, f64);
    s.grad_channel_sq_sum_EF.narrow(0, first, n_local).copy_(v_LFC.pow(2).sum(2));
    // Outliers against the channel's population mean and std over its 3D values.
    at::Tensor mean = v_LFC.mean(2, true);
    at::Tensor std = (v_LFC.pow(2).mean(2, true) - mean.pow(2)).clamp_min(0).sqrt();
    s.grad_outliers_E = at::zeros({E}, at::kLong);
    s.grad_outliers_E.narrow(0, first, n_local).copy_(((v_LFC - mean).abs() > 3 * std).sum({1, 2}));
    // Gram rows of the local experts against every expert (gathered layer by layer).
    at::Tensor all_EX = comm.all_gather_rows(flat_LX);
    s.grad_gram_EE = at::zeros({E, E}, f64);
    s.grad_gram_EE.narrow(0, first, n_local).copy_(at::matmul(flat_LX, all_EX.t()));
    for (at::Tensor* t : {&s.grad_sq_norm_E, &s.grad_channel_sum_EF, &s.grad_channel_sq_sum_EF, &s.grad_outliers_E,
                          &s.grad_gram_EE})
      comm.all_reduce_sum(*t);
  }
}

}  // namespace moelab::jobs
