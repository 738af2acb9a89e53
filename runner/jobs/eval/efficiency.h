// Generation-free efficiency figures of a model: parameter counts, expert FLOPs per
// token, measured forward throughput, peak memory.
//
// expert FLOPs per token = sum over MoE layers of 2 * 3 * D * F * min(k, E_layer):
// each routed expert is three D x F matrices (gate, up, down), a matrix-vector
// product costs 2 FLOPs (multiply + add) per weight, and a token visits k experts.
// Attention, router, dense-layer and lm_head FLOPs are not included: this is the
// figure expert pruning changes (it changes with k, D and F, not with E).
//
// With NAEE dynamic skipping on (hf::ModelConfig::skip_beta), the untimed warm-up
// forward also counts the expert rows skipped: their share of all routed rows and the
// expert FLOPs per token of the experts that really ran (2 * 3 * D * F per row run).
// The benchmark's tokens are random ids, so this share is the one on such input;
// `moelab forward` logs it for real text.
#pragma once

#include <cstdint>

#include "cluster/communicator.h"
#include "core/hf/model_config.h"
#include "core/models/moe_model.h"

namespace moelab::jobs {

struct EfficiencySpec {
  int64_t seq_len = 256;   // tokens per timed sequence
  int64_t batch_size = 1;  // sequences per forward, per rank
  int64_t repeats = 3;     // timed forwards (after one untimed warm-up)
  uint64_t seed = 0;       // for the random token ids
};

struct EfficiencyFigures {
  int64_t total_params = 0, active_params_per_token = 0, routed_expert_params = 0;
  int64_t expert_flops_per_token = 0;
  bool skipping = false;                      // NAEE dynamic skipping configured
  double expert_rows_skipped_fraction = 0;    // skipped rows / (tokens * k), warm-up forward
  double expert_flops_per_token_with_skipping = 0;
  int64_t timed_tokens = 0;  // over all ranks and repeats
  double seconds = 0;        // wall time of the timed forwards (slowest rank)
  double tokens_per_second = 0;
  // Peak resident set size (getrusage ru_maxrss) over the whole process life so far:
  // the largest rank's and the sum over ranks. GPU memory is not included.
  int64_t peak_rss_bytes_max = 0, peak_rss_bytes_sum = 0;
};

int64_t expert_flops_per_token(const hf::ModelConfig& config);

// This process's peak resident set size in bytes.
int64_t peak_rss_bytes();

// Counts parameters, times `repeats` forwards of batch_size x seq_len random tokens on
// every rank (run_data_parallel: each rank runs its own batch, all ranks serve the
// experts), then gathers the peak RSS of every rank. Collective: all ranks call it.
EfficiencyFigures measure_efficiency(const models::MoeModel& model, cluster::Communicator& comm,
                                     const EfficiencySpec& spec);

}  // namespace moelab::jobs
