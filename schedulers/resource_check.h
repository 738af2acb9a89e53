// Refusing, before anything runs or is queued, a sweep whose calibration jobs cannot
// fit the memory their spec grants them: each calibrate job's planned peak per rank
// (schedulers/resource_plan.h, from the model's config.json), summed over its ranks, against
// its resources' `mem`. Summed because Slurm's --mem is per node and `--ntasks=P`
// without `--nodes` may put every rank on one node (as `moelab sweep run` does here).
#pragma once

#include <string>

#include "schedulers/job_graph.h"
#include "schedulers/sweep_spec.h"

namespace moelab::schedulers {

// One calibrate job's figures: planned peak per rank and the mem it is granted (bytes).
struct MemoryCheck {
  std::string job_id, label;
  int64_t per_rank = 0;  // the largest rank's planned peak
  int64_t planned = 0;   // every rank's planned peak, summed
  int64_t granted = 0;   // resources.calibrate.mem
  int ranks = 1;
  bool layerwise = false;         // the job calibrates layer by layer
  int64_t planned_layerwise = 0;  // whole-model jobs: every rank's peak if it went layer by layer
  bool fits() const { return planned <= granted; }
};

// Every calibrate job of the graph, checked. Jobs of a sweep on `device: cuda` are not
// checked (the host memory of a GPU run is not what the planner models).
std::vector<MemoryCheck> check_calibration_memory(const SweepSpec& spec, const JobGraph& graph);

// Throws InputError naming the spec file, the first job that does not fit and the
// figures (planned peak, mem, the rank count that would fit).
void refuse_jobs_over_memory(const SweepSpec& spec, const JobGraph& graph);

}  // namespace moelab::schedulers
