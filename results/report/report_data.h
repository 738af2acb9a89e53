// What `moelab report` reads from a sweep's results directory (schedulers/results_dir.h):
// plan.json (jobs and their tags, the claims: sweep_plan.h), jobs/<id>.json (done or failed:
// job_record.h), eval/<id>.jsonl
// (results_format.md) and score/<id>.json (scores_file.h). Calibration
// statistics (HDF5) are read separately (report_usage.h) so that this part needs
// neither HDF5 nor torch.
//
// Nothing here keeps the results directory's own path: the tables built from it are
// the same wherever the directory lies.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "results/claims.h"
#include "results/sweep_plan.h"

namespace moelab::results::report {

// One column of numbers in the paper-style tables: the perplexity of a domain, the
// accuracy of a multiple-choice task, or the mean accuracy over the tasks.
struct Metric {
  std::string key;    // "ppl:<domain>", "acc:<task>", "avg"
  std::string label;  // "wiki PPL", "tiny_arith", "Avg"
  bool lower_is_better = false;
  bool percent = false;  // an accuracy: shown x100 in Markdown, LaTeX and HTML
};

// A job of plan.json (results/sweep_plan.h; output relative to the results dir) and its state.
struct Job : PlannedJob {
  std::string state = "not run";  // "done" | "failed" | "not run" (no record yet)
};

// A finished evaluation: the metric values of its result records by Metric::key.
struct EvalResult {
  size_t job = 0;  // index into SweepResults::jobs
  std::map<std::string, double> values;
};

// A finished scoring job's scores: criterion -> decoder layer -> one score per expert
// (NaN where the file holds null).
struct ScoreSet {
  size_t job = 0;  // index into SweepResults::jobs
  std::string model, calibration;  // calibration: "" for weight criteria only
  std::string seed;
  std::map<std::string, std::map<int64_t, std::vector<double>>> criteria;
};

struct SweepResults {
  std::string name;                   // the sweep's name (plan.json)
  std::string acc_metric = "acc";     // which accuracy of the multiple-choice records
  std::vector<Job> jobs;              // plan order
  std::vector<EvalResult> evals;      // finished eval jobs, plan order
  std::vector<ScoreSet> scores;       // finished score jobs, plan order
  std::vector<Metric> metrics;        // perplexity domains, then tasks, then "avg" (>= 2 tasks)
  std::vector<std::string> criteria;  // criterion labels ("Min-EAN") in plan order
  std::vector<std::string> models;    // model tags in plan order
  std::vector<std::string> calibrations;  // calibration set names in plan order (non-empty)
  std::vector<std::string> not_done;  // one line per job that is not done: "<state>: <label> (<id>)"
  std::vector<ClaimSpec> claims;      // the sweep spec's claims (plan.json "claims"), spec order

  // The model's name for tables: the last component of its path (the full tag when two
  // models of the sweep share that name).
  std::string model_name(const std::string& model_tag) const;
  // The calibration set a calibrate job served ("" if unknown).
  std::string calibration_of(const Job& calibrate_job) const;
};

// Reads a results directory. InputError naming the file and field for anything
// malformed: plan.json, a job record, an eval results file, a scores file. Jobs that
// are not done are listed in not_done, not errors. `acc_metric`: acc | acc_norm | acc_bytes.
SweepResults load_sweep_results(const std::string& dir, const std::string& acc_metric);

// "0.25" -> "25%" (ratios are fractions of experts dropped).
std::string ratio_label(const std::string& ratio_tag);

}  // namespace moelab::results::report
