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

#include "schedulers/sweep_spec.h"

namespace moelab::schedulers {

struct Job {
  std::string id;                 // 16 hex digits
  std::string kind;               // calibrate | score | prune | finetune | eval
  std::string label;              // for humans: "prune Min-EAN r=0.5 one-shot"
  std::vector<std::string> args;  // moelab arguments (after the binary); {out} = the results dir
  std::vector<std::string> deps;  // ids of the jobs whose outputs it reads
  std::string output;             // its main output, relative to the results dir
  Resources resources;
  // What a report needs to place the job's result: model, calibration, criterion
  // ("Min-EAN"; "none" for the unpruned model), ratio, procedure, recovery, seed.
  std::map<std::string, std::string> tags;
};

struct JobGraph {
  std::vector<Job> jobs;  // dependencies first
  const Job& job(const std::string& id) const;
  int64_t count(const std::string& kind) const;
};

JobGraph build_job_graph(const SweepSpec& spec);

// Batches between the checkpoints of a calibration job of set `c` on `ranks` ranks:
// the set's checkpoint_every, else about ten per job (8 when num_samples is 0: all).
int64_t calibration_checkpoint_every(const CalibrationSpecEntry& c, int64_t ranks);

// A job as JSON (plan.json, Slurm job lists) and back; `source` names the file in errors.
nlohmann::json job_to_json(const Job& j);
Job job_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json graph_to_json(const JobGraph& g);
JobGraph graph_from_json(const nlohmann::json& j, const std::string& source);

// The job's arguments with {out} replaced by the results directory.
std::vector<std::string> job_arguments(const Job& j, const std::string& results_dir);

// FNV-1a 64-bit of the text, as 16 hex digits (stable across platforms and runs).
std::string stable_hash(const std::string& text);

}  // namespace moelab::schedulers
