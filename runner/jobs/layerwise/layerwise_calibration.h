// Calibration one decoder layer at a time (moelab calibrate --layerwise): the model
// is never held whole. The calibration batches' embeddings are computed first; then,
// for each layer, its weights are read from the memory-mapped safetensors (this
// rank's experts only), every batch of this rank runs through it with the same
// observers as the whole-model pass (collect_statistics), its outputs replace its
// inputs (in memory or in a scratch file), and the layer is freed. Per layer, the
// batches run in the same order with the same operations as in the whole-model pass,
// so every statistic is the same, bit for bit.
//
// Forward-only statistic groups work (usage, act_norms, out_norms, coactivation,
// token_ids, act_moments, hidden_change, dense_outputs, gate_ratios, power_sums);
// gradients (a backward through the whole model), naee (re-runs of the whole model)
// and act_outliers (a second whole pass with thresholds from the first) are refused.
//
// Resumable (opts.checkpoint, unit "layer"): after every `every` layers, each rank
// saves its running sums and its hidden states (one tensor per batch, streamed, so a
// scratch-file run stays within its budget); a run started again continues with the
// next layer.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/collect_statistics.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/layerwise/layer_states.h"

namespace moelab::jobs {

struct LayerwiseOptions {
  // Bytes of resident memory the pass may add above the process's size when it
  // starts (0: no budget, hidden states always in memory). Must hold the largest
  // layer's weights (this rank's share).
  int64_t memory_budget = 0;
  std::string scratch_dir = ".";  // where the hidden states go when they do not fit
  // Read the next layer into the page cache while this one runs (runner/jobs/layerwise/layer_prefetch.h).
  bool prefetch = true;
};

// Throws InputError("--layerwise", ...) naming the first group that needs the whole model.
void check_layerwise_groups(const std::set<std::string>& groups);

// The largest layer's weights (this rank's share, compute dtype) in bytes; throws
// InputError("--memory-budget", ...) naming the layer when one exceeds a nonzero budget.
int64_t check_layer_budget(const models::MoeModel& shell, const std::string& dir, int64_t budget);

// The hidden states of a layer-by-layer pass, one [B, T, D] slot per batch (shapes):
// in memory when they take at most half of what the largest layer leaves of the budget
// (the other half is the batches' working memory), else in a scratch file; logged.
std::unique_ptr<LayerStates> hidden_state_store(const models::MoeModel& shell,
                                                const std::vector<std::vector<int64_t>>& shapes,
                                                int64_t largest_layer, const LayerwiseOptions& lw);

// Collective. shell: models::load_model_shell(dir, load) (with the expert-parallel
// dispatcher when comm has several ranks); its layers are loaded and freed one by one
// (it is left as a shell). Returns what collect_statistics returns.
results::CalibrationStats collect_statistics_layerwise(models::MoeModel& shell, const std::string& dir,
                                                       const models::LoadOptions& load, cluster::Communicator& comm,
                                                       const CalibrationSet& set, const std::set<std::string>& groups,
                                                       const CollectOptions& opts, const LayerwiseOptions& lw);

}  // namespace moelab::jobs
