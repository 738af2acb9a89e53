// A sweep's grid as a graph of moelab jobs, with sharing:
//   calibrate  one per (model, calibration set) that some one-shot point with a data
//              criterion uses; it collects the union of those criteria's statistics;
//   score      one per (model, calibration set or none, seed): every criterion of the
//              sweep that can use those statistics (weight criteria need none);
//   prune      one per grid point without recovery (one-shot reads the scores;
//              iterative and lottery re-collect statistics themselves);
//   prune      (`moelab compress`) one per (model, main count) of compressed_experts,
//              tagged criterion Compressed-main<k>, ratio 0, procedure compress;
//   finetune   one per (prune job, recovery setting);
//   eval       one per final model, and once per unpruned model.
// Job ids are stable: a hash of the job's kind, its arguments and its inputs' ids, so
// the same spec always gives the same ids and a finished job is recognised on re-runs.
// Outputs live under the sweep's results directory: <kind>/<id>[.ext].
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "results/sweep_plan.h"
#include "schedulers/sweep_spec.h"

namespace moelab::schedulers {

// A job as plan.json stores it (results/sweep_plan.h owns the format and its reader).
using Job = results::PlannedJob;
using results::job_from_json;
using results::job_to_json;

struct JobGraph {
  std::vector<Job> jobs;  // dependencies first
  const Job& job(const std::string& id) const;
  int64_t count(JobKind kind) const;
};

JobGraph build_job_graph(const SweepSpec& spec);

// Batches between the checkpoints of a calibration job of set `c` on `ranks` ranks:
// the set's checkpoint_every, else about ten per job (8 when num_samples is 0: all).
int64_t calibration_checkpoint_every(const CalibrationSpecEntry& c, int64_t ranks);

// The jobs of plan.json as JSON and back (job_to_json / job_from_json per job).
nlohmann::json graph_to_json(const JobGraph& g);
JobGraph graph_from_json(const nlohmann::json& j, const std::string& source);

// The job's arguments with {out} replaced by the results directory.
std::vector<std::string> job_arguments(const Job& j, const std::string& results_dir);

// FNV-1a 64-bit of the text, as 16 hex digits (stable across platforms and runs).
std::string stable_hash(const std::string& text);

}  // namespace moelab::schedulers
