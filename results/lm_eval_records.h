// lm-evaluation-harness's results file -> moelab result records (kind "lm_eval").
//
// lm-eval 0.4.x writes `<output_path>/<model>/results_<time>.json`; its "results" map
// has one entry per task (and per group) with metrics keyed "<metric>,<filter>"
// ("acc,none", "exact_match,strict-match"). One record per entry, in file order:
//   task     the lm-eval task (or group) name
//   metrics  every number of the entry under lm-eval's key, ",none" dropped ("acc",
//            "acc_stderr", "exact_match,strict-match"); "N/A" stderrs become null
//   n_items  n-samples.effective (items scored after --limit); 0 for a group
//   settings the caller's settings plus num_fewshot (lm-eval's n-shot), limit,
//            lm_eval_version, fewshot_seed
//   details  primary_metric (the entry's first metric key that is not a stderr, as lm-eval
//            orders them: the task's metric_list), higher_is_better (per metric name),
//            task_version, n_samples_original
// Format: results/results_format.md. Free of torch and HDF5.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "results/result_records.h"

namespace moelab::results {

// `lm_eval_out`: the parsed results file (ordered, so that metric order survives);
// `source` names it in errors (InputError naming the field). `model` and `settings`
// go into every record; world_size is the ranks the backend ran on.
std::vector<ResultRecord> lm_eval_records(const nlohmann::ordered_json& lm_eval_out, const std::string& source,
                                          const std::string& model, const nlohmann::json& settings,
                                          int64_t world_size);

// Whether a metric name is a fraction shown as a percentage in reports (acc, acc_norm,
// exact_match, f1, mc1/mc2 and lm-eval's *_acc family).
bool lm_eval_metric_is_fraction(const std::string& metric);

}  // namespace moelab::results
