#include "runner/jobs/layerwise/layer_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/common/log.h"

namespace moelab::jobs {

LayerProgress::LayerProgress(int64_t layers, int64_t batches, double interval_s)
    : layers_(layers), batches_(std::max<int64_t>(batches, 1)), interval_s_(interval_s), start_(Clock::now()),
      last_log_(start_) {}

std::string LayerProgress::line(int64_t layer, int64_t layers, int64_t batch, int64_t batches, double fraction,
                                double tokens_per_s, double eta_s) {
  constexpr int kWidth = 20;
  const int filled = std::clamp(int(std::lround(fraction * kWidth)), 0, kWidth);
  const int64_t eta = std::isfinite(eta_s) ? int64_t(std::lround(std::max(eta_s, 0.0))) : -1;
  char eta_text[32] = "?";
  if (eta >= 0) std::snprintf(eta_text, sizeof eta_text, "%lld:%02lld", (long long)(eta / 60), (long long)(eta % 60));
  char where[64] = "";
  if (layers > 0) std::snprintf(where, sizeof where, "layer %lld/%lld ", (long long)layer + 1, (long long)layers);
  char buf[200];
  std::snprintf(buf, sizeof buf, "%sbatch %lld/%lld [%s%s] %3d%% %.0f tok/s ETA %s", where, (long long)batch + 1,
                (long long)batches, std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                int(std::lround(fraction * 100)), tokens_per_s, eta_text);
  return buf;
}

double LayerProgress::tokens_per_s(double elapsed_s) const {
  if (elapsed_s <= 0) return 0;
  return double(tokens_) / double(std::max<int64_t>(layers_, 1)) / elapsed_s;
}

void LayerProgress::batch_done(int64_t layer, int64_t batch, int64_t tokens) {
  const double fraction =
      double(layer * batches_ + batch + 1) / double(std::max<int64_t>(layers_, 1) * batches_);
  if (start_fraction_ < 0) {  // the first batch of this run: count rate and ETA from its start
    start_fraction_ = double(layer * batches_ + batch) / double(std::max<int64_t>(layers_, 1) * batches_);
  }
  tokens_ += tokens;
  const auto now = Clock::now();
  const bool last = batch + 1 == batches_;
  if (!last && std::chrono::duration<double>(now - last_log_).count() < interval_s_) return;
  last_log_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = tokens_per_s(elapsed);
  const double progressed = fraction - start_fraction_;
  const double eta = progressed > 0 ? elapsed * (1 - fraction) / progressed : NAN;
  spdlog::info("{}", line(layer, layers_, batch, batches_, fraction, rate, eta));
}

}  // namespace moelab::jobs
