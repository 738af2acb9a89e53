#include "cluster/data_parallel.h"

#include <cstring>

#include "cluster/alltoall_dispatcher.h"
#include "core/common/log.h"

namespace moelab::cluster {

int64_t num_steps(const Communicator& comm, int64_t num_sequences, const DataParallelOptions& opts) {
  const int64_t num_batches = (num_sequences + opts.batch_size - 1) / opts.batch_size;
  return (num_batches + comm.size() - 1) / comm.size();
}

void for_each_batch(Communicator& comm, const std::vector<std::vector<int64_t>>& seqs, const DataParallelOptions& opts,
                    const std::function<void(const at::Tensor&, const std::vector<int64_t>&,
                                             const std::vector<int64_t>&)>& fn) {
  const int64_t P = comm.size(), me = comm.rank();
  const int64_t num_batches = (int64_t(seqs.size()) + opts.batch_size - 1) / opts.batch_size;
  const int64_t steps = num_steps(comm, int64_t(seqs.size()), opts);
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t b = step * P + me;
    std::vector<int64_t> idx, lengths;
    int64_t T = 0;
    for (int64_t i = b * opts.batch_size; b < num_batches && i < std::min<int64_t>((b + 1) * opts.batch_size, seqs.size());
         ++i) {
      idx.push_back(i);
      lengths.push_back(int64_t(seqs[i].size()));
      T = std::max<int64_t>(T, seqs[i].size());
    }
    at::Tensor ids = at::zeros({int64_t(idx.size()), T}, at::TensorOptions().dtype(at::kLong));
    for (size_t r = 0; r < idx.size(); ++r)
      std::memcpy(ids[r].data_ptr<int64_t>(), seqs[idx[r]].data(), seqs[idx[r]].size() * sizeof(int64_t));
    fn(ids, lengths, idx);
  }
}

void run_data_parallel(const models::MoeModel& model, Communicator& comm,
                       const std::vector<std::vector<int64_t>>& seqs, const DataParallelOptions& opts,
                       models::MoeObserver* observer,
                       const std::function<void(int64_t, const at::Tensor&)>& on_logits) {
  for_each_batch(comm, seqs, opts, [&](const at::Tensor& ids, const std::vector<int64_t>& lengths,
                                       const std::vector<int64_t>& idx) {
    at::Tensor logits = models::forward(model, ids, lengths, observer);
    for (size_t r = 0; r < idx.size(); ++r) on_logits(idx[r], logits[r].narrow(0, 0, lengths[r]));
  });
}

std::vector<at::Tensor> gather_sequence_outputs(Communicator& comm, const std::vector<int64_t>& indices,
                                                const std::vector<at::Tensor>& outputs, int64_t num_sequences) {
  // Rows of all local outputs, plus (index, length) per output.
  std::vector<at::Tensor> rows;
  std::vector<int64_t> meta;
  int64_t width = -1;
  for (size_t i = 0; i < outputs.size(); ++i) {
    rows.push_back(outputs[i].to(at::kCPU, at::kFloat));
    meta.push_back(indices[i]);
    meta.push_back(outputs[i].size(0));
    width = outputs[i].size(1);
  }
  // Ranks without outputs do not know the width: take the largest any rank reports.
  at::Tensor w = at::tensor({width}, at::kLong);
  at::Tensor all_w = comm.all_gather_rows(w);
  width = all_w.max().item<int64_t>();
  at::Tensor local = rows.empty() ? at::empty({0, width}, at::kFloat) : at::cat(rows, 0);
  at::Tensor all_rows = comm.all_gather_rows(local);
  at::Tensor all_meta =
      comm.all_gather_rows(at::tensor(meta, at::TensorOptions().dtype(at::kLong)).reshape({-1, 2}));
  std::vector<at::Tensor> out(num_sequences);
  int64_t offset = 0;
  for (int64_t r = 0; r < all_meta.size(0); ++r) {
    const int64_t index = all_meta[r][0].item<int64_t>(), len = all_meta[r][1].item<int64_t>();
    out[index] = all_rows.narrow(0, offset, len);
    offset += len;
  }
  return out;
}

models::MoeModel load_expert_parallel(const std::string& dir, std::shared_ptr<Communicator> comm,
                                      models::LoadOptions opts) {
  opts.dispatcher = std::make_shared<AllToAllDispatcher>(comm);
  models::MoeModel m = models::load_model(dir, opts);
  // Rank 0 shows what each rank holds: shared weights + its share of the experts.
  const auto wb = models::weight_bytes(m);
  int64_t first = -1, count = 0;
  for (const auto& L : m.layers)
    if (L.moe) {
      first = L.moe->first_local;
      count = L.moe->num_local();
      break;
    }
  at::Tensor mine = at::tensor({int64_t(comm->rank()), wb.shared, wb.experts, first, count}, at::kLong).view({1, 5});
  at::Tensor all = comm->all_gather_rows(mine);
  for (int64_t r = 0; r < all.size(0); ++r) {
    auto row = all[r];
    spdlog::info("rank {}: experts [{}, {}) of the first MoE layer; weights {:.1f} MiB = shared {:.1f} + experts {:.1f}",
                 row[0].item<int64_t>(), row[3].item<int64_t>(), row[3].item<int64_t>() + row[4].item<int64_t>(),
                 (row[1].item<int64_t>() + row[2].item<int64_t>()) / 1048576.0, row[1].item<int64_t>() / 1048576.0,
                 row[2].item<int64_t>() / 1048576.0);
  }
  return m;
}

}  // namespace moelab::cluster
