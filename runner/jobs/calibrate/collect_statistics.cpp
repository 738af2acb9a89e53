#include "runner/jobs/calibrate/collect_statistics.h"

#include <ATen/core/grad_mode.h>

#include "cluster/data_parallel.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/next_token_loss.h"
#include "runner/jobs/calibrate/collector_set.h"
#include "runner/jobs/calibrate/expert_gradients.h"
#include "runner/jobs/calibrate/observer_fanout.h"
#include "runner/jobs/layerwise/layer_progress.h"

namespace moelab::jobs {

results::CalibrationStats collect_statistics(models::MoeModel& m, cluster::Communicator& comm,
                                             const CalibrationSet& set, const std::set<std::string>& groups,
                                             const CollectOptions& opts) {
  const bool gradients = groups.count(results::stat::kGradients) != 0;
  if (m.config.has_novices() && (gradients || groups.count(results::stat::kNaee)))
    throw InputError(m.config.path, "has MoNE novices: the gradients and naee statistics need every expert's weights");
  int64_t targets = 0;  // next-token targets: the gradient loss is their mean
  for (const auto& s : set.sequences) targets += std::max<int64_t>(int64_t(s.size()) - 1, 0);
  if (gradients && targets == 0)
    throw InputError("calibration data", "gradients need sequences of at least 2 tokens (no next-token targets)");

  // One pass collects every statistic: forward with the collectors attached, plus a
  // backward of the mean next-token loss when gradients are wanted.
  CollectorSet collectors(m, groups, opts.power_exponents);
  std::vector<models::MoeObserver*> observers = collectors.observers();
  std::unique_ptr<NaeeSearch> naee;
  if (groups.count(results::stat::kNaee)) {
    naee = std::make_unique<NaeeSearch>(m, opts.naee);
    observers.push_back(naee.get());
    spdlog::info("NAEE: dropping {:.0f}% of each layer's experts; {} pass(es) of dense observation",
                 100 * opts.naee.ratio, naee->passes_needed());
  }
  if (groups.count(results::stat::kDenseOutputs))
    spdlog::info("dense_outputs: every expert runs on every token (dense observation)");
  ObserverFanOut observer(observers);
  if (gradients) enable_expert_gradients(m);
  cluster::DataParallelOptions dp;
  dp.batch_size = opts.batch_size;
  // Resuming: the sums of the steps already done come from the checkpoint; those
  // steps are skipped on every rank alike (no forward, so no collective either).
  const StateTensors state = collectors.state();
  CalibrationCheckpoint checkpoint(opts.checkpoint, comm);
  if (checkpoint.enabled()) check_resumable_groups(groups);
  const int64_t start_step = checkpoint.restore(state);
  const int64_t total_steps = cluster::num_steps(comm, int64_t(set.sequences.size()), dp);
  LayerProgress progress(0, total_steps);
  int64_t step = 0;
  cluster::for_each_batch(comm, set.sequences, dp,
                          [&](const at::Tensor& ids, const std::vector<int64_t>& lengths, const std::vector<int64_t>&) {
                            if (step++ < start_step) return;
                            if (gradients) {
                              at::Tensor logits = models::forward(m, ids, lengths, &observer);
                              backward_next_token_loss(logits, ids, lengths, 1.0 / double(targets));
                            } else {
                              at::NoGradGuard no_grad;
                              models::observe_forward(m, ids, lengths, observer);  // no logits needed
                            }
                            int64_t tokens = 0;
                            for (int64_t n : lengths) tokens += n;
                            progress.batch_done(0, step - 1, tokens);
                            checkpoint.maybe_save(step, total_steps, state);
                          });
  collectors.all_reduce(comm);
  if (naee) naee->finish_pass(comm);
  at::NoGradGuard no_grad;  // later passes only observe
  StatsCollector& collector = collectors.stats();
  if (collector.needs_outlier_pass()) {  // EAO: thresholds from pass 1, counts in pass 2
    spdlog::info("second pass: activation outliers (mean +- 3 std per channel)");
    collector.start_outlier_pass();
    cluster::run_data_parallel(m, comm, set.sequences, dp, &collector, [](int64_t, const at::Tensor&) {});
    collector.all_reduce_outliers(comm);
  }
  for (int64_t pass = 2; naee && !naee->done(); ++pass) {  // greedy NAEE: one elimination per pass
    spdlog::info("NAEE greedy elimination: pass {}", pass);
    cluster::run_data_parallel(m, comm, set.sequences, dp, naee.get(), [](int64_t, const at::Tensor&) {});
    naee->finish_pass(comm);
  }

  results::CalibrationStats st = collectors.take();
  if (gradients) {
    collect_gradient_stats(m, comm, st.layers);
    disable_expert_gradients(m);
  }
  if (naee) naee->fill(st.layers);
  fill_model_metadata(st, m, comm, set);
  return st;
}

void fill_model_metadata(results::CalibrationStats& st, const models::MoeModel& m, cluster::Communicator& comm,
                         const CalibrationSet& set) {
  st.architecture = m.config.architecture;
  st.num_sequences = int64_t(set.sequences.size());
  st.num_tokens = set.num_tokens;
  st.vocab_size = m.config.vocab_size;
  st.hidden_size = m.config.hidden_size;
  st.world_size = comm.size();
  st.norm_topk_prob = m.config.router.norm_topk_prob;
  st.experts_per_token = m.config.num_experts_per_tok;
}

}  // namespace moelab::jobs
