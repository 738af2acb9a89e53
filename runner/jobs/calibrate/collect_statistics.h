// The calibration pass as a library call: every statistic group asked for, in one
// forward pass (plus a backward for gradients, a second pass for activation outliers,
// and extra dense passes for greedy NAEE), distributed over the model's ranks and
// all-reduced. Used by `moelab calibrate` and by the iterative pruning procedures,
// which re-collect statistics on the pruned model each round.
#pragma once

#include <set>
#include <string>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"
#include "runner/jobs/calibrate/naee_search.h"
#include "runner/jobs/data/calibration_data.h"

namespace moelab::jobs {

struct CollectOptions {
  int64_t batch_size = 8;  // sequences per forward
  NaeeOptions naee;
  // The a and p of the power_sums group (results::default_power_exponents() by default).
  std::vector<double> power_exponents = results::default_power_exponents();
  // Resumable pass (whole-model pass only; groups checked by check_resumable_groups).
  CheckpointOptions checkpoint;
};

// Collective. `groups`: results::stat::k* names (unknown names are ignored by the
// collectors; validate before). Leaves the model's weights as they were (gradients
// are switched off again). Fills layers, collected groups and the model-derived
// metadata (architecture, sizes, world size, router normalisation); file-level
// provenance (model path, calibration description, version) is the caller's.
results::CalibrationStats collect_statistics(models::MoeModel& model, cluster::Communicator& comm,
                                             const CalibrationSet& set, const std::set<std::string>& groups,
                                             const CollectOptions& opts);

// The model-derived metadata of `st` (architecture, sizes, world size, router
// normalisation, sequence and token counts); shared with the layer-by-layer pass.
void fill_model_metadata(results::CalibrationStats& st, const models::MoeModel& m, cluster::Communicator& comm,
                         const CalibrationSet& set);

}  // namespace moelab::jobs
