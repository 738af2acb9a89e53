#include "runner/jobs/eval/efficiency.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "cluster/data_parallel.h"
#include "runner/jobs/calibrate/skip_counter.h"
#include "runner/jobs/eval/sequence_scores.h"

namespace moelab::jobs {

int64_t expert_flops_per_token(const hf::ModelConfig& c) {
  int64_t flops = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t E = c.num_experts_per_layer.at(l);
    // Compressed experts: the k_m main experts run (the vectors' element-wise products
    // are not counted).
    const int64_t k = c.compressed() ? c.compressed_main : c.num_experts_per_tok;
    if (E > 0) flops += 2 * 3 * c.hidden_size * c.moe_intermediate_size * std::min(k, E);
  }
  return flops;
}

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

EfficiencyFigures measure_efficiency(const models::MoeModel& model, cluster::Communicator& comm,
                                     const EfficiencySpec& spec) {
  EfficiencyFigures f;
  const models::ParamCounts p = models::count_params(model);
  f.total_params = p.total;
  f.active_params_per_token = p.active_per_token;
  f.routed_expert_params = p.routed_experts;
  f.expert_flops_per_token = expert_flops_per_token(model.config);

  // Every rank gets one batch per forward: P * batch_size sequences in all.
  const int64_t P = comm.size();
  uint64_t state = spec.seed;
  std::vector<std::vector<int64_t>> seqs(P * spec.batch_size, std::vector<int64_t>(spec.seq_len));
  for (auto& s : seqs)
    for (auto& id : s) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;  // LCG: any fixed ids will do
      id = int64_t((state >> 33) % uint64_t(model.config.vocab_size));
    }
  cluster::DataParallelOptions dp;
  dp.batch_size = spec.batch_size;
  // Reading one logit waits for the device: CUDA kernels run asynchronously.
  auto run = [&](models::MoeObserver* observer) {
    cluster::run_data_parallel(model, comm, seqs, dp, observer,
                               [](int64_t, const at::Tensor& logits_TV) { (void)logits_TV[-1][0].item<float>(); });
  };
  // Warm-up: first-touch allocations, lazy kernel set-up; counts skipped rows if any.
  f.skipping = skipping_enabled(model.config);
  std::optional<SkipCounter> skips;
  run(f.skipping ? &skips.emplace(model) : nullptr);
  if (skips) {
    skips->all_reduce(comm);
    f.expert_rows_skipped_fraction = skips->total().skipped_fraction();
    f.expert_flops_per_token_with_skipping = skips->expert_flops_per_token();
  }
  comm.barrier();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < spec.repeats; ++r) run(nullptr);
  comm.barrier();
  const double mine = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Slowest rank's time; every rank's peak RSS (one slot per rank, summed).
  at::Tensor secs = at::zeros({P}, at::kDouble), rss = at::zeros({P}, at::kLong);
  secs[comm.rank()] = mine;
  rss[comm.rank()] = peak_rss_bytes();
  comm.all_reduce_sum(secs);
  comm.all_reduce_sum(rss);
  f.seconds = secs.max().item<double>();
  f.timed_tokens = spec.repeats * P * spec.batch_size * spec.seq_len;
  f.tokens_per_second = f.seconds > 0 ? double(f.timed_tokens) / f.seconds : 0;
  f.peak_rss_bytes_max = rss.max().item<int64_t>();
  f.peak_rss_bytes_sum = rss.sum().item<int64_t>();
  return f;
}

}  // namespace moelab::jobs
