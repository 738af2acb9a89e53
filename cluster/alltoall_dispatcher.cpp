#include "cluster/alltoall_dispatcher.h"

namespace moelab::cluster {
namespace {

// Tags identify a row's source token across ranks: rank * 2^40 + token index.
constexpr int64_t kRankTagStride = int64_t(1) << 40;

struct State {
  std::vector<int64_t> send_rows, recv_rows;  // per rank
  at::Tensor regroup;                         // received-row index of each expert-side row
};

}  // namespace

models::DispatchedTokens AllToAllDispatcher::plan(int64_t, int64_t num_experts, const at::Tensor& topk_ids_NK,
                                                  const at::Tensor& topk_w_NK) {
  const int P = comm_->size(), me = comm_->rank();
  const at::Device device = topk_ids_NK.device();
  State s;
  models::DispatchedTokens d;
  d.num_tokens = topk_ids_NK.size(0);
  d.rows = models::sort_rows_by_expert(topk_ids_NK, topk_w_NK, num_experts);
  const int64_t* count_e = d.rows.counts_E.data_ptr<int64_t>();

  // 1. Row counts: rank j gets our counts for its experts.
  std::vector<int64_t> expert_send(P), expert_recv(P);
  s.send_rows.assign(P, 0);
  for (int j = 0; j < P; ++j) {
    expert_send[j] = placement_.count(num_experts, j);
    expert_recv[j] = placement_.num_local(num_experts);
    for (int64_t e = placement_.first(num_experts, j); e < placement_.first(num_experts, j + 1); ++e)
      s.send_rows[j] += count_e[e];
  }
  const int64_t L = placement_.num_local(num_experts);
  at::Tensor counts_from =  // [P * L] (travels on the tokens' device: NCCL needs CUDA tensors)
      comm_->all_to_all_rows(d.rows.counts_E.to(device), expert_send, expert_recv).cpu();
  const int64_t* M = counts_from.data_ptr<int64_t>();  // M[src * L + i]: rows from src for local expert i
  s.recv_rows.assign(P, 0);
  for (int src = 0; src < P; ++src)
    for (int64_t i = 0; i < L; ++i) s.recv_rows[src] += M[src * L + i];

  // 2. Regroup by local expert: for expert i, the segments of every source in rank order.
  std::vector<int64_t> src_start(P, 0);
  for (int src = 1; src < P; ++src) src_start[src] = src_start[src - 1] + s.recv_rows[src - 1];
  std::vector<int64_t> regroup;
  d.rows_per_local_expert.assign(L, 0);
  for (int64_t i = 0; i < L; ++i)
    for (int src = 0; src < P; ++src) {
      int64_t start = src_start[src];
      for (int64_t j = 0; j < i; ++j) start += M[src * L + j];
      for (int64_t r = 0; r < M[src * L + i]; ++r) regroup.push_back(start + r);
      d.rows_per_local_expert[i] += M[src * L + i];
    }
  s.regroup = at::tensor(regroup, at::TensorOptions().dtype(at::kLong)).to(device);
  d.state = std::move(s);

  // 3. Each row's (gate, tag) as float64 (tags < 2^53 stay exact).
  at::Tensor meta = at::stack({d.rows.gate_of.detach().to(at::kDouble),
                               (d.rows.token_of + int64_t(me) * kRankTagStride).to(at::kDouble)},
                              1);
  at::Tensor meta_M = to_experts(meta, d);
  d.gate_M = meta_M.select(1, 0).to(topk_w_NK.scalar_type());
  d.tag_M = meta_M.select(1, 1).to(at::kLong);
  return d;
}

at::Tensor AllToAllDispatcher::to_experts(const at::Tensor& rows_RC, const models::DispatchedTokens& d) {
  const auto& s = std::any_cast<const State&>(d.state);
  return comm_->all_to_all_rows(rows_RC.contiguous(), s.send_rows, s.recv_rows).index_select(0, s.regroup);
}

at::Tensor AllToAllDispatcher::to_tokens(const at::Tensor& rows_MC, const models::DispatchedTokens& d) {
  const auto& s = std::any_cast<const State&>(d.state);
  at::Tensor received_order = at::empty_like(rows_MC);
  received_order.index_copy_(0, s.regroup, rows_MC);
  return comm_->all_to_all_rows(received_order, s.recv_rows, s.send_rows);
}

}  // namespace moelab::cluster
