// Data parallelism on top of expert parallelism: sequences are cut into batches,
// batch b runs on rank b % P, and every rank takes part in every step (a rank
// without a batch in the last step serves its experts with B = 0).
#pragma once

#include <functional>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"

namespace moelab::cluster {

struct DataParallelOptions {
  int64_t batch_size = 8;  // sequences per forward
};

// The number of steps for_each_batch makes (the same on every rank).
int64_t num_steps(const Communicator& comm, int64_t num_sequences, const DataParallelOptions& opts);

// This rank's batches, step by step: fn(ids [B, T] int64 CPU right-padded, lengths
// [B], sequence indices [B]). Every rank makes the same number of calls (steps); a
// rank without a batch in a step gets B = 0 and must still run the model (collectives).
void for_each_batch(Communicator& comm, const std::vector<std::vector<int64_t>>& sequences,
                    const DataParallelOptions& opts,
                    const std::function<void(const at::Tensor&, const std::vector<int64_t>&,
                                             const std::vector<int64_t>&)>& fn);

// Calls on_logits(sequence index, logits [len, V]) on the rank that ran it.
void run_data_parallel(const models::MoeModel& model, Communicator& comm,
                       const std::vector<std::vector<int64_t>>& sequences, const DataParallelOptions& opts,
                       models::MoeObserver* observer,
                       const std::function<void(int64_t, const at::Tensor&)>& on_logits);

// Every rank's (index, logits) pairs, gathered on every rank, in sequence order
// (float32, CPU).
std::vector<at::Tensor> gather_sequence_outputs(Communicator& comm, const std::vector<int64_t>& indices,
                                                const std::vector<at::Tensor>& outputs, int64_t num_sequences);

// The model with expert parallelism over `comm`: loads only this rank's experts.
models::MoeModel load_expert_parallel(const std::string& dir, std::shared_ptr<Communicator> comm,
                                      models::LoadOptions opts = {});

}  // namespace moelab::cluster
