// Reading the next decoder layer from disk while this one runs (layer-by-layer passes:
// calibrate, eval and forward --layerwise). A background thread asks the kernel to read
// the next layer's tensors (this rank's share) into the page cache; load_layer then
// copies them from memory instead of waiting on the disk. No weights are copied or held
// by the thread, so the pass's resident memory and --memory-budget are unchanged (the
// page cache is the kernel's, reclaimable); on a checkpoint already cached it costs a
// header read per layer.
#pragma once

#include <cstdint>
#include <future>
#include <string>

#include "core/models/moe_model.h"

namespace moelab::jobs {

class LayerPrefetch {
 public:
  // enabled = false: start() does nothing (LayerwiseOptions::prefetch).
  LayerPrefetch(const models::MoeModel& shell, std::string dir, bool enabled);
  ~LayerPrefetch();  // waits for the running prefetch
  LayerPrefetch(const LayerPrefetch&) = delete;
  LayerPrefetch& operator=(const LayerPrefetch&) = delete;

  // Waits for the previous prefetch, then starts reading `layer` (nothing past the last
  // layer). A failure is only logged: the load that follows reads the file anyway and
  // reports any real problem.
  void start(int64_t layer);

 private:
  void wait();
  const models::MoeModel& shell_;
  std::string dir_;
  bool enabled_;
  std::future<void> running_;
};

}  // namespace moelab::jobs
