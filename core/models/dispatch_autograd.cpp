#include "core/models/dispatch_autograd.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

namespace moelab::models {
namespace {

using torch::autograd::variable_list;

// Backward of one move: the opposite move of the incoming gradient. An undefined
// incoming gradient (output unused on this rank) still takes part in the exchange,
// as zeros, because the other ranks are waiting for it.
class MoveRowsBackward : public torch::autograd::Node {
 public:
  MoveRowsBackward(ExpertDispatcher& dispatcher, std::shared_ptr<const DispatchedTokens> plan, bool forward_was_to_experts,
                   const at::Tensor& output)
      : dispatcher_(dispatcher),
        plan_(std::move(plan)),
        forward_was_to_experts_(forward_was_to_experts),
        output_sizes_(output.sizes().vec()),
        output_options_(output.options()) {}

  std::string name() const override { return forward_was_to_experts_ ? "MoveToExpertsBackward" : "MoveToTokensBackward"; }

  variable_list apply(variable_list&& grads) override {
    at::Tensor g = grads[0].defined() ? grads[0] : at::zeros(output_sizes_, output_options_);
    at::NoGradGuard no_grad;
    at::Tensor out = forward_was_to_experts_ ? dispatcher_.to_tokens(g, *plan_) : dispatcher_.to_experts(g, *plan_);
    return {out};
  }

 private:
  ExpertDispatcher& dispatcher_;
  std::shared_ptr<const DispatchedTokens> plan_;
  bool forward_was_to_experts_;
  std::vector<int64_t> output_sizes_;
  at::TensorOptions output_options_;
};

at::Tensor move(ExpertDispatcher& dispatcher, const std::shared_ptr<const DispatchedTokens>& plan,
                const at::Tensor& rows, bool to_experts, bool track) {
  at::Tensor out;
  {
    at::NoGradGuard no_grad;
    out = to_experts ? dispatcher.to_experts(rows.detach(), *plan) : dispatcher.to_tokens(rows.detach(), *plan);
  }
  if (!track || !at::GradMode::is_enabled()) return out;
  auto node = c10::make_intrusive<MoveRowsBackward>(dispatcher, plan, to_experts, out);
  // No next edge when the input needs no gradient: the node still runs (it is
  // reachable from the loss), which keeps the ranks' exchanges in step.
  node->set_next_edges(torch::autograd::collect_next_edges(rows));
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace

at::Tensor move_to_experts(ExpertDispatcher& dispatcher, const std::shared_ptr<const DispatchedTokens>& plan,
                           const at::Tensor& rows_RC, bool track) {
  return move(dispatcher, plan, rows_RC, /*to_experts=*/true, track);
}

at::Tensor move_to_tokens(ExpertDispatcher& dispatcher, const std::shared_ptr<const DispatchedTokens>& plan,
                          const at::Tensor& rows_MC, bool track) {
  return move(dispatcher, plan, rows_MC, /*to_experts=*/false, track);
}

}  // namespace moelab::models
