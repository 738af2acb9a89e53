#include "runner/jobs/layerwise/layer_prefetch.h"

#include <exception>

#include "core/common/log.h"
#include "core/models/layer_loader.h"

namespace moelab::jobs {

LayerPrefetch::LayerPrefetch(const models::MoeModel& shell, std::string dir, bool enabled)
    : shell_(shell), dir_(std::move(dir)), enabled_(enabled) {}

LayerPrefetch::~LayerPrefetch() { wait(); }

void LayerPrefetch::wait() {
  if (running_.valid()) running_.get();
}

void LayerPrefetch::start(int64_t layer) {
  wait();
  if (!enabled_ || layer < 0 || layer >= shell_.config.num_hidden_layers) return;
  running_ = std::async(std::launch::async, [this, layer] {
    try {
      models::prefetch_layer(shell_, dir_, layer);
    } catch (const std::exception& e) {
      spdlog::debug("prefetching layer {}: {}", layer, e.what());
    }
  });
}

}  // namespace moelab::jobs
