// Progress of a calibration pass: one log line per batch (at most one every
// `interval_s`, plus the last batch of each layer) with a bar over the whole run,
// this rank's model tokens/s (tokens through the whole model per second: a layer-by-layer
// pass sees each token once per layer, and counting those token-layers would overstate
// the rate L times) and an ETA. Layer by layer:
//   layer 3/12 batch 2/4 [#######.............]  35% 8123 tok/s ETA 0:41
// the whole-model pass (layers = 0):
//   batch 7/20 [#######.............]  35% 8123 tok/s ETA 0:41
// A resumed run starts at a later batch; its rate and ETA count from there.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace moelab::jobs {

class LayerProgress {
 public:
  // layers: decoder layers of a layer-by-layer pass, 0 for the whole-model pass;
  // batches: per layer (or in the pass).
  LayerProgress(int64_t layers, int64_t batches, double interval_s = 1.0);
  // Batch `batch` (0-based) of layer `layer` (0 for the whole-model pass) is done; it
  // held `tokens` valid tokens.
  void batch_done(int64_t layer, int64_t batch, int64_t tokens);
  // Model tokens per second had the batches seen so far taken `elapsed_s`: tokens summed
  // over the batches, divided by the layers they passed (1 for the whole-model pass).
  double tokens_per_s(double elapsed_s) const;
  // The line batch_done logs (exposed for tests): fraction done in [0, 1], rate in
  // model tokens/s, ETA in seconds; layers = 0 leaves the layer out.
  static std::string line(int64_t layer, int64_t layers, int64_t batch, int64_t batches, double fraction,
                          double tokens_per_s, double eta_s);

 private:
  using Clock = std::chrono::steady_clock;
  int64_t layers_, batches_;
  double interval_s_;
  Clock::time_point start_, last_log_;
  int64_t tokens_ = 0;
  double start_fraction_ = -1;  // done before this run's first batch (a resumed run)
};

}  // namespace moelab::jobs
