#include "runner/jobs/eval/sequence_scores.h"

#include "cluster/data_parallel.h"
#include "core/common/error.h"

namespace moelab::jobs {

std::vector<SequenceScore> score_sequences(const models::MoeModel& model, cluster::Communicator& comm,
                                           const std::vector<ScoredSequence>& seqs, int64_t batch_size) {
  return score_sequences(
      [&](const std::vector<std::vector<int64_t>>& inputs, const cluster::DataParallelOptions& dp,
          const std::function<void(int64_t, const at::Tensor&)>& on_logits) {
        cluster::run_data_parallel(model, comm, inputs, dp, nullptr, on_logits);
      },
      comm, seqs, batch_size);
}

std::vector<SequenceScore> score_sequences(const LogitsRunner& run, cluster::Communicator& comm,
                                           const std::vector<ScoredSequence>& seqs, int64_t batch_size) {
  const int64_t S = int64_t(seqs.size());
  std::vector<std::vector<int64_t>> inputs;
  inputs.reserve(S);
  for (const auto& s : seqs) {
    const int64_t n = int64_t(s.ids.size());
    TORCH_CHECK(s.first_scored >= 1 && s.first_scored < n, "score_sequences: need 1 <= first_scored < length");
    inputs.emplace_back(s.ids.begin(), s.ids.end() - 1);
  }
  // One slot per sequence, written by the rank that ran it and zero elsewhere: the
  // sum over ranks moves each value exactly (x + 0 = x).
  at::Tensor logprob = at::zeros({S}, at::kDouble);
  at::Tensor greedy = at::zeros({S}, at::kLong);
  double* lp = logprob.data_ptr<double>();
  int64_t* gr = greedy.data_ptr<int64_t>();
  cluster::DataParallelOptions dp;
  dp.batch_size = batch_size;
  run(inputs, dp, [&](int64_t i, const at::Tensor& logits_TV) {
    const auto& s = seqs[i];
    const int64_t n = int64_t(s.ids.size()), first = s.first_scored;
    // Position t - 1 predicts token t.
    at::Tensor rows = logits_TV.narrow(0, first - 1, n - first).to(at::kFloat);
    at::Tensor target =
        at::tensor(std::vector<int64_t>(s.ids.begin() + first, s.ids.end()), at::kLong).to(rows.device());
    at::Tensor token_lp = (rows.gather(1, target.unsqueeze(1)).squeeze(1) - at::logsumexp(rows, 1))
                              .to(at::kCPU, at::kDouble)
                              .contiguous();
    const double* v = token_lp.data_ptr<double>();
    double sum = 0;  // in token order, so that the value does not depend on a reduction's blocking
    for (int64_t t = 0; t < token_lp.numel(); ++t) sum += v[t];
    lp[i] = sum;
    gr[i] = rows.argmax(1).eq(target).all().item<bool>() ? 1 : 0;
  });
  comm.all_reduce_sum(logprob);
  comm.all_reduce_sum(greedy);
  lp = logprob.data_ptr<double>();
  gr = greedy.data_ptr<int64_t>();
  std::vector<SequenceScore> out(S);
  for (int64_t i = 0; i < S; ++i) {
    out[i].logprob = lp[i];
    out[i].n_scored = int64_t(seqs[i].ids.size()) - seqs[i].first_scored;
    out[i].greedy = gr[i] != 0;
  }
  return out;
}

}  // namespace moelab::jobs
