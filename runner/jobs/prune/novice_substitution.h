// MoNE (Zhang et al., arXiv 2507.00390; the authors' zxgx/mode-pd, expert_prune_by_mone):
// the experts a pruning plan drops are replaced by "novices", constant vectors that a token
// routed to them receives instead of the expert's output, weighted by its gate as an
// expert's would be. A novice is its expert's mean output f_j over the calibration tokens
// routed to it (their `baseline_out`; out_sum_ED / tokens_E of the out_moments statistics),
// zero for an expert that received no token. The router is unchanged (every expert keeps
// its row, so routing and top-k are the unpruned model's): its rows are reordered to the
// kept experts, then the novices (hf::ModelConfig::novices_per_layer).
// Reading: the authors' novices can keep adapting at inference (`enable_novice_evolving`,
// off by default); moelab's are fixed, their default.
#pragma once

#include <string>

#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/prune/pruning_plan.h"

namespace moelab::jobs {

// `model` whole in this process (no expert parallelism), the plan checked against it.
// InputError naming `stats_path` when the statistics lack out_moments or are of another
// model, naming the plan when it lowers top-k (novices keep every routing choice).
void substitute_novices(models::MoeModel& model, const PruningPlan& plan, const results::CalibrationStats& stats,
                        const std::string& stats_path);

}  // namespace moelab::jobs
