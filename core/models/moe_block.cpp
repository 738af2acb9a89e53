// Routed experts, computed grouped: the N*K (token, slot) rows are moved, grouped by
// expert, to the experts' process (core/models/expert_dispatch.h), each expert runs one
// [n, D] x [D, 2F] and one [n, F] x [F, D] matmul on its contiguous rows, the
// outputs come back and are weighted by the gates and summed per token. The
// forward reads: route, plan, move, compute, move back, combine. Every step is
// differentiable (the moves through core/models/dispatch_autograd.h) so that gradients
// reach the experts' weights on whichever rank holds them. Routing (top-k, NAEE
// skipping, compressed experts) is core/models/routing.cpp.
//
// Llama-4's router gates the experts' INPUT (hf::ModelConfig::router_gate_on_input): a
// row enters its expert as x * g and its output is summed with weight 1. What the
// observers see then: on_routing the router's gates g (gate_sum_E is the sum of the
// sigmoid gates), on_expert the activation and output of the expert on its input as the
// expert sees it, x * g (act_norm_*, out_norm_*, activation moments), with row weight 1,
// so that gate_out_norm_sum_E and EASY-EP's g ||f|| are the norms of what the rows add
// to the layer's output, ||f(x * g)||, as for the other families g ||f(x)|| is.
#include <ATen/core/grad_mode.h>

#include "core/common/error.h"
#include "core/models/blocks.h"
#include "core/models/compressed_experts.h"
#include "core/models/dispatch_autograd.h"

namespace moelab::models {

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  return at::relu(x);
}

namespace {

// An expert's activation from its gate and up projections [n, F]: act(gate) * up, or
// gpt-oss's clamped SwiGLU (hf::ExpertTraits::swiglu_limit; GptOssExperts._apply_gate).
at::Tensor glu(const at::Tensor& gate, const at::Tensor& up, const hf::ModelConfig& c) {
  if (!c.expert.clamped_swiglu()) return activation(gate, c.hidden_act) * up;
  const double limit = *c.expert.swiglu_limit;
  at::Tensor g = gate.clamp_max(limit);
  return (up.clamp(-limit, limit) + 1) * (g * at::sigmoid(g * c.expert.swiglu_alpha));
}

// The local experts on their rows x_MC (grouped as d.rows_per_local_expert):
// outputs f(x) [M, D] before gating. Rows are x [M, D], or with `ce_rows` (official
// compressed experts) x*c1 | x*c3 | c2 [M, 2D + F] (core/models/compressed_experts.h).
// `observe` gets (local expert, row offset, rows, activation [n, F], output [n, D]).
//
// Outside autograd the outputs are written into one [M, D] tensor (each expert's
// rows, in order; no concatenation), the activation function runs in place on the
// gate half of the gate/up product, and an observer's per-expert outputs are
// consecutive rows of one storage (runner/jobs/calibrate/stats_collector.cpp reduces them for all
// experts at once). The arithmetic is the same (same kernels, same order).
template <typename Observe>
at::Tensor compute_local_experts(const ExpertWeights& w, const hf::ModelConfig& c, const DispatchedTokens& d,
                                 const at::Tensor& x_MD, bool ce_rows, Observe&& observe) {
  const int64_t F = w.down_EDF.size(2);
  auto glu_of = [&](const at::Tensor& gate, const at::Tensor& up) { return glu(gate, up, c); };
  auto bias_of = [&](int64_t i) { return w.gate_up_bias_EF.defined() ? w.gate_up_bias_EF[i] : at::Tensor(); };
  if (!at::GradMode::is_enabled()) {
    const int64_t M = d.num_expert_rows(), D = w.down_EDF.size(1);
    if (M == 0) return x_MD.narrow(1, 0, D) * 0;
    at::Tensor y_MD = at::empty({M, D}, x_MD.options());
    const bool silu_glu = !c.expert.clamped_swiglu() && c.hidden_act == "silu";
    int64_t offset = 0;
    for (int64_t i = 0; i < int64_t(d.rows_per_local_expert.size()); ++i) {
      const int64_t n = d.rows_per_local_expert[i];
      if (n == 0) continue;
      at::Tensor act;
      if (ce_rows) {
        act = compressed_activation(w.gate_up_EFD[i], bias_of(i), x_MD.narrow(0, offset, n), glu_of);
      } else {
        at::Tensor gu = at::matmul(x_MD.narrow(0, offset, n), w.gate_up_EFD[i].t());
        if (w.gate_up_bias_EF.defined()) gu.add_(w.gate_up_bias_EF[i]);  // gpt-oss
        if (silu_glu) {  // silu in place on the gate half, then one product
          at::Tensor gate = gu.narrow(1, 0, F);
          at::silu_(gate);
          act = gate * gu.narrow(1, F, F);
        } else {
          act = glu(gu.narrow(1, 0, F), gu.narrow(1, F, F), c);
        }
      }
      at::Tensor y = y_MD.narrow(0, offset, n);
      at::mm_out(y, act, w.down_EDF[i].t());
      if (w.down_bias_ED.defined()) y.add_(w.down_bias_ED[i]);
      observe(i, offset, n, act, y);
      offset += n;
    }
    return y_MD;
  }
  std::vector<at::Tensor> outputs;
  int64_t offset = 0;
  for (int64_t i = 0; i < int64_t(d.rows_per_local_expert.size()); ++i) {
    const int64_t n = d.rows_per_local_expert[i];
    if (n == 0) continue;
    at::Tensor act;
    if (ce_rows) {
      act = compressed_activation(w.gate_up_EFD[i], bias_of(i), x_MD.narrow(0, offset, n), glu_of);
    } else {
      at::Tensor gu = at::matmul(x_MD.narrow(0, offset, n), w.gate_up_EFD[i].t());
      if (w.gate_up_bias_EF.defined()) gu = gu + w.gate_up_bias_EF[i];  // gpt-oss
      act = glu(gu.narrow(1, 0, F), gu.narrow(1, F, F), c);
    }
    at::Tensor y = at::matmul(act, w.down_EDF[i].t());
    if (w.down_bias_ED.defined()) y = y + w.down_bias_ED[i];
    observe(i, offset, n, act, y);
    outputs.push_back(y);
    offset += n;
  }
  // No rows here: still an output that depends on x_MD, so that backward passes
  // through this rank's moves like every other rank's.
  return outputs.empty() ? x_MD.narrow(1, 0, w.down_EDF.size(1)) * 0 : at::cat(outputs, 0);
}

// Dense observation: every expert on every token, reported as [N, E, D] (on x itself,
// without compressed experts' vectors; under Llama-4's gate on the input, on x scaled by
// the expert's own sigmoid gate).
void observe_all_experts(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND,
                         const at::Tensor& logits_NE, int64_t layer, ExpertDispatcher& dispatcher,
                         MoeObserver& observer) {
  at::NoGradGuard no_grad;
  if (w.num_novices() > 0)
    throw InputError("dense observation", "a model with MoNE novices has experts without weights to run on every token");
  const int64_t N = x_ND.size(0), E = w.num_experts(), D = x_ND.size(1);
  auto i64 = at::TensorOptions().dtype(at::kLong).device(x_ND.device());
  at::Tensor all_NE = at::arange(E, i64).unsqueeze(0).expand({N, E}).contiguous();
  at::Tensor ones_NE = at::ones({N, E}, x_ND.options());
  auto plan = std::make_shared<const DispatchedTokens>(dispatcher.plan(layer, E, all_NE, ones_NE));
  at::Tensor x_RD = x_ND.index_select(0, plan->rows.token_of);
  // Llama-4 (router_gate_on_input): expert j sees x * sigmoid(logit_j), as it would if chosen.
  if (c.router.gate_on_input)
    x_RD = x_RD * at::sigmoid(logits_NE.to(at::kFloat))
                      .reshape(-1)
                      .index_select(0, plan->rows.token_of * E + plan->rows.expert_of)
                      .to(x_ND.scalar_type())
                      .unsqueeze(1);
  at::Tensor x_MD = dispatcher.to_experts(x_RD, *plan);
  at::Tensor y_MD = compute_local_experts(w, c, *plan, x_MD, /*ce_rows=*/false, [](auto&&...) {});
  // Rows come back expert-major (stable sort: token order within an expert).
  at::Tensor y_END = dispatcher.to_tokens(y_MD, *plan).view({E, N, D});
  observer.on_all_expert_outputs(layer, logits_NE, y_END.transpose(0, 1));
}

}  // namespace

at::Tensor moe_forward(const ExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND, int64_t layer,
                       ExpertDispatcher& dispatcher, MoeObserver* observer) {
  const int64_t E = w.num_experts();
  const Routing r = route(w, c, x_ND, layer);
  if (observer) observer->on_routing(layer, r.logits_NE.detach(), r.topk_ids_NK, r.gates_NK.detach());

  // Plan and move: rows grouped by local expert on the experts' process. Backward
  // graphs are recorded when the experts' or the router's weights want gradients
  // (training sets always include one of them, the same on every rank, so every
  // rank records the same exchanges).
  const bool track = at::GradMode::is_enabled() &&
                     (w.gate_up_EFD.requires_grad() || w.router_ED.requires_grad() ||
                      (w.theta_ED.defined() && w.theta_ED.requires_grad()) ||
                      (w.ces_E3W.defined() && w.ces_E3W.requires_grad()));
  // Slots that do not run (NAEE-skipped, compressed experts' auxiliary) carry expert
  // id E: the plan leaves them out.
  // The plan carries the combine weights (the gates, or ones when they scale the input).
  // MoNE novices: routed like experts, computed here (gate x constant vector); their slots
  // are left out of the plan like skipped ones (id = the number of real experts).
  const int64_t E_real = w.num_real();
  at::Tensor dispatch_NK = r.dispatch_ids_NK, novice_out_ND;
  if (E_real < E) {
    const at::Tensor is_novice_NK = r.topk_ids_NK >= E_real;
    const at::Tensor slot_NK = (r.topk_ids_NK - E_real).clamp_min(0);
    const at::Tensor weight_NK = r.combine_NK * is_novice_NK.to(r.combine_NK.scalar_type());
    const int64_t N = slot_NK.size(0), K = slot_NK.size(1);
    novice_out_ND = (weight_NK.unsqueeze(2).to(w.novice_ND.scalar_type()) *
                     w.novice_ND.index_select(0, slot_NK.reshape(-1)).view({N, K, w.novice_ND.size(1)}))
                        .sum(1);
    dispatch_NK = dispatch_NK.masked_fill(dispatch_NK >= E_real, E_real);
  }
  auto plan = std::make_shared<const DispatchedTokens>(dispatcher.plan(layer, E_real, dispatch_NK, r.combine_NK));
  const DispatchedTokens& d = *plan;
  at::Tensor x_RC = r.x_in_NC.index_select(0, d.rows.token_of);
  // Llama-4: each (token, slot) row enters its expert as x * gate (Llama4TextMoe.forward).
  if (r.input_gates_NK.defined())
    x_RC = x_RC * r.input_gates_NK.reshape(-1).index_select(0, d.rows.order).unsqueeze(1);
  at::Tensor x_MD = move_to_experts(dispatcher, plan, x_RC, track);

  // Compute: one matmul pair per local expert on its contiguous slice.
  at::Tensor y_MD = compute_local_experts(w, c, d, x_MD, c.compressed_official(),
                                          [&](int64_t i, int64_t offset, int64_t n, const at::Tensor& act,
                                              const at::Tensor& y) {
    if (observer)
      observer->on_expert(layer, w.first_local + i, d.tag_M.narrow(0, offset, n), act.detach(), y.detach(),
                          d.gate_M.narrow(0, offset, n));
  });

  // Move back and combine: gate-weighted sum per token, on the tokens' process.
  at::Tensor y_RD = move_to_tokens(dispatcher, plan, y_MD, track);
  if (observer) {
    observer->on_combine(layer, d.rows.expert_of, d.rows.token_of, d.rows.gate_of.detach(), y_RD.detach());
    if (observer->wants_all_expert_outputs())
      observe_all_experts(w, c, x_ND.detach(), r.logits_NE.detach(), layer, dispatcher, *observer);
  }
  at::Tensor y_ND = weighted_scatter_add(y_RD, d.rows, d.num_tokens);
  return novice_out_ND.defined() ? y_ND + novice_out_ND.to(y_ND.scalar_type()) : y_ND;
}

at::Tensor dense_mlp_forward(const DenseMlpWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND) {
  return at::linear(activation(at::linear(x_ND, w.gate_FD), c.hidden_act) * at::linear(x_ND, w.up_FD), w.down_DF);
}

at::Tensor shared_expert_forward(const SharedExpertWeights& w, const hf::ModelConfig& c, const at::Tensor& x_ND) {
  at::Tensor y = dense_mlp_forward(w.mlp, c, x_ND);
  return w.gate_1D.defined() ? at::sigmoid(at::linear(x_ND, w.gate_1D)) * y : y;
}

}  // namespace moelab::models
