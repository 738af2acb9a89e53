// What `moelab eval` records: its result records (results/results_format.md: one per
// model and task) and per-item lines, built from the evaluation jobs' results
// (perplexity.h, multiple_choice.h, efficiency.h). The command (runner/cli/cmd_eval.cpp)
// runs the jobs, prints the table and writes these.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/models/moe_model.h"
#include "results/result_records.h"
#include "runner/jobs/eval/efficiency.h"
#include "runner/jobs/eval/multiple_choice.h"
#include "runner/jobs/eval/perplexity.h"

namespace moelab::jobs {

// What every record of one eval run says about the run.
struct EvalRecordContext {
  std::string model_dir;       // the model as given on the command line
  std::string moelab_version;
  int64_t world_size = 1;      // ranks
  std::string text_field = "text", windows = "guide";  // perplexity settings as given
  EfficiencySpec bench;        // efficiency settings
};

struct EvalOutput {
  std::vector<results::ResultRecord> records;
  std::vector<nlohmann::json> per_item;  // --per-item lines
};

// One record per perplexity domain (metrics, its files) and one per-item line per document.
void add_perplexity_records(const EvalRecordContext& c, const models::MoeModel& m, const PerplexityPlan& plan,
                            const PerplexityResults& res, EvalOutput& out);
// One record per multiple-choice task and one per-item line per item (lm-eval's fields).
void add_multiple_choice_records(const EvalRecordContext& c, const models::MoeModel& m, const McPlan& plan,
                                 const McResults& res, EvalOutput& out);
void add_efficiency_record(const EvalRecordContext& c, const models::MoeModel& m, const EfficiencyFigures& f,
                           EvalOutput& out);

}  // namespace moelab::jobs
