// The super experts a sweep's prune jobs protected (moelab prune --protect-super-experts,
// sweep key protect_super_experts), for the report's notes: read from each finished
// prune job's plan (`<output>.plan.json`, keys "protected" and "protect_rule",
// runner/jobs/prune/pruning_plan.h), one line per model and calibration set.
#pragma once

#include <string>
#include <vector>

#include "results/report/report_data.h"

namespace moelab::results::report {

// e.g. "super experts of mixtral (calibration c), kept by 4 prune jobs: layer 0: 3; layer 1:
// 5, 6 (super experts: out_max > 41.2 = max(q99.5, max/10), first 75% of MoE layers)".
// InputError naming the plan file when a finished job's plan is unreadable.
std::vector<std::string> super_expert_notes(const std::string& results_dir, const SweepResults& r);

}  // namespace moelab::results::report
