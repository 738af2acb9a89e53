// Progress of the layer-by-layer calibration: one log line per batch of each layer
// (at most one every `interval_s`, plus each layer's last batch) with a bar over the
// whole run, this rank's tokens/s and an ETA, e.g.
//   layer 3/12 batch 2/4 [#######.............]  35% 8123 tok/s ETA 0:41
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace moelab::jobs {

class LayerProgress {
 public:
  LayerProgress(int64_t layers, int64_t batches, double interval_s = 1.0);
  // Batch `batch` (0-based) of layer `layer` is done; it held `tokens` valid tokens.
  void batch_done(int64_t layer, int64_t batch, int64_t tokens);
  // The line batch_done logs (exposed for tests): fraction done in [0, 1], rate in tokens/s, ETA in seconds.
  static std::string line(int64_t layer, int64_t layers, int64_t batch, int64_t batches, double fraction,
                          double tokens_per_s, double eta_s);

 private:
  using Clock = std::chrono::steady_clock;
  int64_t layers_, batches_;
  double interval_s_;
  Clock::time_point start_, last_log_;
  int64_t tokens_ = 0;
};

}  // namespace moelab::jobs
