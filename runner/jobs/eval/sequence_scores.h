// Log-likelihood of the tail of token sequences, the one model computation behind
// both perplexity and multiple-choice evaluation, spread over ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/models/moe_model.h"

namespace moelab::jobs {

// One sequence to score: tokens ids[0..n), of which ids[first_scored..n) are scored,
// each given all tokens before it (1 <= first_scored < n).
struct ScoredSequence {
  std::vector<int64_t> ids;
  int64_t first_scored = 1;
};

struct SequenceScore {
  double logprob = 0;    // sum of log p(ids[t] | ids[<t]) over the scored t, natural log
  int64_t n_scored = 0;  // n - first_scored
  bool greedy = false;   // every scored token is the model's argmax at its position
};

// Runs ids[0..n-1) of every sequence (the last token is only a target) through the
// model, batch_size sequences per forward, batches spread over the ranks of `comm`
// (cluster::run_data_parallel; every rank must call this with the same list).
// Returns every sequence's score on every rank, in list order.
//
// Per token, log p = logit - logsumexp(logits) in float32 (the logits upcast as
// transformers' loss does), summed per sequence in float64. Each value is computed
// by one rank and moved exactly, so results depend on the rank count only through
// the forward's float rounding.
std::vector<SequenceScore> score_sequences(const models::MoeModel& model, cluster::Communicator& comm,
                                           const std::vector<ScoredSequence>& seqs, int64_t batch_size);

// What computes the logits: run(sequences, options, on_logits) calls on_logits(index,
// logits [len, V]) on the rank that ran each sequence, as cluster::run_data_parallel
// (the whole model) or jobs::run_layerwise (one layer at a time) do.
using LogitsRunner = std::function<void(const std::vector<std::vector<int64_t>>&, const cluster::DataParallelOptions&,
                                        const std::function<void(int64_t, const at::Tensor&)>&)>;
// The same scores, the logits computed by `run`.
std::vector<SequenceScore> score_sequences(const LogitsRunner& run, cluster::Communicator& comm,
                                           const std::vector<ScoredSequence>& seqs, int64_t batch_size);

}  // namespace moelab::jobs
