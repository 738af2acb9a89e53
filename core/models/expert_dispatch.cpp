#include "core/models/expert_dispatch.h"

namespace moelab::models {

SortedRows sort_rows_by_expert(const at::Tensor& topk_ids_NK, const at::Tensor& topk_w_NK, int64_t num_experts) {
  const int64_t K = topk_ids_NK.size(1);
  SortedRows r;
  at::Tensor flat_ids = topk_ids_NK.reshape(-1);
  r.order = std::get<1>(at::sort(flat_ids, /*stable=*/true, 0, false));
  r.counts_E = at::bincount(flat_ids, {}, num_experts).cpu();
  if (r.counts_E.size(0) > num_experts) {  // skipped slots (id num_experts) sort last: cut them off
    TORCH_CHECK(r.counts_E.size(0) == num_experts + 1, "expert id out of range");
    r.order = r.order.narrow(0, 0, flat_ids.size(0) - r.counts_E[num_experts].item<int64_t>());
    r.counts_E = r.counts_E.narrow(0, 0, num_experts).contiguous();
  }
  r.token_of = at::floor_divide(r.order, K);
  r.expert_of = flat_ids.index_select(0, r.order);
  r.gate_of = topk_w_NK.reshape(-1).index_select(0, r.order);
  return r;
}

at::Tensor weighted_scatter_add(const at::Tensor& y_RD, const SortedRows& rows, int64_t num_tokens) {
  at::Tensor out = at::zeros({num_tokens, y_RD.size(1)}, y_RD.options());
  return out.index_add(0, rows.token_of, y_RD * rows.gate_of.unsqueeze(1));
}

DispatchedTokens LocalDispatcher::plan(int64_t, int64_t num_experts, const at::Tensor& topk_ids_NK,
                                       const at::Tensor& topk_w_NK) {
  DispatchedTokens d;
  d.rows = sort_rows_by_expert(topk_ids_NK, topk_w_NK, num_experts);
  d.num_tokens = topk_ids_NK.size(0);
  d.gate_M = d.rows.gate_of.detach();
  d.tag_M = d.rows.token_of;
  const int64_t* c = d.rows.counts_E.data_ptr<int64_t>();
  d.rows_per_local_expert.assign(c, c + num_experts);
  return d;
}

}  // namespace moelab::models
