#include "runner/jobs/layerwise/layerwise_calibration.h"

#include <ATen/core/grad_mode.h>

#include <memory>

#include "cluster/cuda_support.h"
#include "cluster/data_parallel.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/layer_forward.h"
#include "core/models/layer_loader.h"
#include "results/stat_groups.h"
#include "runner/jobs/calibrate/collector_set.h"
#include "runner/jobs/calibrate/observer_fanout.h"
#include "runner/jobs/layerwise/layer_prefetch.h"
#include "runner/jobs/layerwise/layer_progress.h"
#include "runner/jobs/layerwise/layer_states.h"

namespace moelab::jobs {
namespace {

// One step of this rank's batches (cluster::for_each_batch): B = 0 when the rank has
// no batch in that step and only serves its experts.
struct Step {
  at::Tensor ids_BT;
  std::vector<int64_t> lengths;
  int64_t tokens = 0;
};

}  // namespace

void check_layerwise_groups(const std::set<std::string>& groups) {
  if (const results::StatGroup* g = results::first_whole_model_group(groups))
    throw InputError("--layerwise", "statistic group \"" + g->name + "\" " + g->whole_model_only +
                                        "; collect it without --layerwise");
}

int64_t check_layer_budget(const models::MoeModel& shell, const std::string& dir, int64_t budget) {
  int64_t largest = 0;
  for (int64_t l = 0; l < shell.config.num_hidden_layers; ++l) {
    const int64_t bytes = models::layer_weight_bytes(shell, dir, l);
    if (budget > 0 && bytes > budget)
      throw InputError("--memory-budget", "layer " + std::to_string(l) + " needs " + mib(bytes) +
                                              " for its weights on this rank, more than the budget of " + mib(budget));
    largest = std::max(largest, bytes);
  }
  return largest;
}

std::unique_ptr<LayerStates> hidden_state_store(const models::MoeModel& m,
                                                const std::vector<std::vector<int64_t>>& shapes,
                                                int64_t largest_layer, const LayerwiseOptions& lw) {
  int64_t state_bytes = 0;
  for (const auto& s : shapes) state_bytes += s[0] * s[1] * s[2] * int64_t(at::elementSize(m.dtype));
  const bool in_memory = lw.memory_budget == 0 || state_bytes <= (lw.memory_budget - largest_layer) / 2;
  auto states = std::make_unique<LayerStates>(shapes, m.dtype, in_memory, lw.scratch_dir);
  spdlog::info("layer by layer: {} layers, largest {} of weights on this rank; hidden states {} {}",
               m.config.num_hidden_layers, mib(largest_layer), mib(state_bytes),
               in_memory ? "in memory" : "in a scratch file in " + lw.scratch_dir);
  return states;
}

results::CalibrationStats collect_statistics_layerwise(models::MoeModel& m, const std::string& dir,
                                                       const models::LoadOptions& load, cluster::Communicator& comm,
                                                       const CalibrationSet& set, const std::set<std::string>& groups,
                                                       const CollectOptions& opts, const LayerwiseOptions& lw) {
  check_layerwise_groups(groups);
  map_large_blocks();
  at::NoGradGuard no_grad;
  const auto& c = m.config;
  const int64_t largest_layer = check_layer_budget(m, dir, lw.memory_budget);

  // The same collectors as collect_statistics, built from the shell (shapes only).
  CollectorSet collectors(m, groups, opts.power_exponents);
  ObserverFanOut observer(collectors.observers());

  // This rank's steps, in the whole-model pass's order.
  std::vector<Step> steps;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<size_t> slot_of_step;
  cluster::DataParallelOptions dp;
  dp.batch_size = opts.batch_size;
  cluster::for_each_batch(comm, set.sequences, dp,
                          [&](const at::Tensor& ids, const std::vector<int64_t>& lengths, const std::vector<int64_t>&) {
                            Step s{ids, lengths, 0};
                            for (int64_t n : lengths) s.tokens += n;
                            slot_of_step.push_back(shapes.size());
                            if (ids.size(0) > 0) shapes.push_back({ids.size(0), ids.size(1), c.hidden_size});
                            steps.push_back(std::move(s));
                          });

  const std::unique_ptr<LayerStates> store = hidden_state_store(m, shapes, largest_layer, lw);
  LayerStates& states = *store;

  // Everything the pass needs between layers is the layer reached, `states` and the
  // collectors' sums: a checkpoint after layer l holds exactly those.
  const StateTensors sums = collectors.state();
  StreamedState hidden;
  hidden.dtype = m.dtype;
  hidden.shapes = shapes;
  for (size_t i = 0; i < shapes.size(); ++i) hidden.names.push_back("hidden_states." + std::to_string(i));
  hidden.get = [&](size_t i) { return states.get(i); };
  hidden.put = [&](size_t i, const at::Tensor& h) { states.put(i, h); };
  CalibrationCheckpoint checkpoint(opts.checkpoint, comm);
  const int64_t layers_done = checkpoint.restore(sums, &hidden);
  if (layers_done == 0)
    for (size_t i = 0; i < steps.size(); ++i)
      if (steps[i].ids_BT.size(0) > 0)
        states.put(slot_of_step[i], models::embed_from_checkpoint(m, dir, steps[i].ids_BT));

  LayerProgress progress(c.num_hidden_layers, int64_t(steps.size()));
  LayerPrefetch prefetch(m, dir, lw.prefetch);
  for (int64_t l = layers_done; l < c.num_hidden_layers; ++l) {
    const models::LayerWeights shell_layer = m.layers[l];
    models::load_layer(m, dir, l, load);
    prefetch.start(l + 1);  // read from disk while this layer runs
    const models::LayerWeights& L = m.layers[l];
    for (size_t i = 0; i < steps.size(); ++i) {
      const Step& s = steps[i];
      if (s.ids_BT.size(0) == 0) {
        if (L.moe) {
          observer.on_batch(at::empty({0}, at::kLong));
          models::serve_layer_experts(m, L, l, &observer);
        }
      } else {
        const at::Tensor ids = s.ids_BT.to(m.device);
        const models::BatchContext ctx = models::batch_context(m, ids, s.lengths);
        observer.on_batch(models::valid_token_ids(ids, ctx));
        at::Tensor h = states.get(slot_of_step[i]).to(m.device);
        states.put(slot_of_step[i], models::decoder_layer_forward(m, L, l, h, ctx, &observer));
      }
      progress.batch_done(l, int64_t(i), s.tokens);
    }
    m.layers[l] = shell_layer;  // frees the layer's weights
    return_free_memory();
    if (m.device.is_cuda()) cluster::cuda_empty_cache();  // the device holds one layer at a time too
    checkpoint.maybe_save(l + 1, c.num_hidden_layers, sums, &hidden);
  }

  collectors.all_reduce(comm);
  results::CalibrationStats st = collectors.take();
  fill_model_metadata(st, m, comm, set);
  return st;
}

}  // namespace moelab::jobs
