#include "criteria/stats_access.h"

#include "common/error.h"

namespace moelab::criteria {

const results::LayerStats& layer_stats(const ScoreInputs& in, int64_t moe_index, const std::string& group,
                                       const std::string& criterion) {
  if (!in.stats)
    throw InputError("criterion " + criterion, "needs calibration statistics: pass --stats FILE from moelab calibrate");
  if (!in.stats->collected.count(group))
    throw InputError("criterion " + criterion, "the statistics file lacks \"" + group +
                                                   "\"; collect it with: moelab calibrate ... --criteria " + criterion);
  if (moe_index < 0 || moe_index >= int64_t(in.stats->layers.size()))
    throw InputError("criterion " + criterion, "the statistics file has no MoE layer #" + std::to_string(moe_index));
  return in.stats->layers[size_t(moe_index)];
}

}  // namespace moelab::criteria
