// plan.json, a sweep's job graph as saved in its results directory: the one reader and
// writer that the scheduler (results_dir, executors, Slurm job lists), `moelab report` and
// the fuzz targets share, with the one check that keeps job paths inside the directory.
//
//   {"name": "...", "spec": "/abs/path/sweep.yaml",
//    "jobs": [{"id": 16 hex digits (read: any name of letters, digits, - and _),
//              "kind": calibrate|score|prune|finetune|eval, "label",
//              "deps": [ids], "args": [moelab arguments, {out} = the results dir],
//              "output": "<kind>/<id>[.h5|.json|.jsonl]", "tags": {string: string},
//              "resources": {"ranks", "gpus", "mem", "time"}}, ...],
//    "claims": [...] (claims.h)}
//
// Torch-free and HDF5-free (moelab_records).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/common/enum_words.h"
#include "results/claims.h"

namespace moelab::results {

// What a job runs (its moelab command; "score" runs `moelab score`), which also names the
// folder of its output (<kind>/<id>...) and its resources' key (score jobs take
// calibrate's).
enum class JobKind { kCalibrate, kScore, kPrune, kFinetune, kEval };
inline constexpr EnumWords<JobKind, 5> kJobKindWords = {{{JobKind::kCalibrate, "calibrate"},
                                                         {JobKind::kScore, "score"},
                                                         {JobKind::kPrune, "prune"},
                                                         {JobKind::kFinetune, "finetune"},
                                                         {JobKind::kEval, "eval"}}};
inline const char* to_string(JobKind kind) { return enum_word(kJobKindWords, kind); }
inline std::optional<JobKind> parse_job_kind(const std::string& word) { return parse_enum_word(kJobKindWords, word); }

// What a job asks of the machine (a sweep's `resources.<kind>`; Slurm's request).
struct JobResources {
  int64_t ranks = 1, gpus = 0;
  std::string mem = "4G", time = "01:00:00";
};

struct PlannedJob {
  std::string id;                 // 16 hex digits
  JobKind kind = JobKind::kCalibrate;
  std::string label;              // for humans: "prune Min-EAN r=0.5 one-shot"
  std::vector<std::string> args;  // moelab arguments (after the binary); {out} = the results dir
  std::vector<std::string> deps;  // ids of the jobs whose outputs it reads
  std::string output;             // its main output, relative to the results dir
  JobResources resources;
  // What a report needs to place the job's result: model, calibration, criterion
  // ("Min-EAN"; "none" for the unpruned model), ratio, procedure, recovery, seed.
  std::map<std::string, std::string> tags;
};

struct SweepPlan {
  std::string name, spec;
  std::vector<PlannedJob> jobs;  // dependencies first
  std::vector<ClaimSpec> claims;
};

// A job's id names files (jobs/<id>.json, logs/<id>.log) and its output is removed before
// a retry: both must stay inside the results directory whatever plan.json says. InputError
// ("<source>: malformed job ...") unless the id is a name of letters, digits, - and _ (the
// scheduler writes 16 hex digits), the kind known and the output "<kind>/<id>" plus nothing,
// ".h5", ".json" or ".jsonl".
void check_job_paths(const PlannedJob& job, const std::string& source);

// One job as JSON (plan.json, Slurm job lists) and back; `source` names the file in errors
// ("malformed job: ..."), and every job read passes check_job_paths.
nlohmann::json job_to_json(const PlannedJob& job);
PlannedJob job_from_json(const nlohmann::json& j, const std::string& source);

nlohmann::json sweep_plan_to_json(const SweepPlan& plan);
// InputError naming the file: unreadable, not JSON, a field missing or of the wrong type,
// a malformed job, an id that appears twice.
SweepPlan read_sweep_plan(const std::string& path);

}  // namespace moelab::results
