#include "runner/jobs/layerwise/layerwise_forward.h"

#include <ATen/core/grad_mode.h>

#include "cluster/cuda_support.h"
#include "core/common/log.h"
#include "core/common/memory_budget.h"
#include "core/models/layer_forward.h"
#include "core/models/layer_loader.h"
#include "runner/jobs/layerwise/layer_prefetch.h"
#include "runner/jobs/layerwise/layer_states.h"

namespace moelab::jobs {

void run_layerwise(models::MoeModel& m, const std::string& dir, const models::LoadOptions& load,
                   cluster::Communicator& comm, const std::vector<std::vector<int64_t>>& sequences,
                   const cluster::DataParallelOptions& dp, const LayerwiseOptions& lw, models::MoeObserver* observer,
                   const std::function<void(int64_t, const at::Tensor&)>& on_logits) {
  map_large_blocks();
  at::NoGradGuard no_grad;
  const auto& c = m.config;
  const int64_t largest_layer = check_layer_budget(m, dir, lw.memory_budget);

  // This rank's steps, in run_data_parallel's order.
  struct Step {
    at::Tensor ids_BT;
    std::vector<int64_t> lengths, indices;
    size_t slot = 0;
  };
  std::vector<Step> steps;
  std::vector<std::vector<int64_t>> shapes;
  cluster::for_each_batch(comm, sequences, dp,
                          [&](const at::Tensor& ids, const std::vector<int64_t>& lengths,
                              const std::vector<int64_t>& idx) {
                            steps.push_back({ids, lengths, idx, shapes.size()});
                            if (ids.size(0) > 0) shapes.push_back({ids.size(0), ids.size(1), c.hidden_size});
                          });
  const std::unique_ptr<LayerStates> store = hidden_state_store(m, shapes, largest_layer, lw);
  LayerStates& states = *store;
  for (const auto& s : steps)
    if (s.ids_BT.size(0) > 0) states.put(s.slot, models::embed_from_checkpoint(m, dir, s.ids_BT));

  LayerPrefetch prefetch(m, dir, lw.prefetch);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const models::LayerWeights shell_layer = m.layers[l];
    models::load_layer(m, dir, l, load);
    prefetch.start(l + 1);  // read from disk while this layer runs
    const models::LayerWeights& L = m.layers[l];
    for (const auto& s : steps) {
      if (s.ids_BT.size(0) == 0) {  // no batch here in this step: serve this rank's experts
        if (L.moe) {
          if (observer) observer->on_batch(at::empty({0}, at::kLong));
          models::serve_layer_experts(m, L, l, observer);
        }
        continue;
      }
      const at::Tensor ids = s.ids_BT.to(m.device);
      const models::BatchContext ctx = models::batch_context(m, ids, s.lengths);
      if (observer) observer->on_batch(models::valid_token_ids(ids, ctx));
      at::Tensor h = states.get(s.slot).to(m.device);
      states.put(s.slot, models::decoder_layer_forward(m, L, l, h, ctx, observer));
    }
    m.layers[l] = shell_layer;  // frees the layer's weights
    return_free_memory();
    if (m.device.is_cuda()) cluster::cuda_empty_cache();
  }

  models::load_output_head(m, dir, load);
  for (const auto& s : steps) {
    if (s.ids_BT.size(0) == 0) continue;
    const at::Tensor logits = models::output_logits(m, states.get(s.slot).to(m.device));
    for (size_t r = 0; r < s.indices.size(); ++r) on_logits(s.indices[r], logits[int64_t(r)].narrow(0, 0, s.lengths[r]));
  }
  models::drop_output_head(m);
}

}  // namespace moelab::jobs
