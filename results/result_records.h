// The results store: one JSON object per line, one line per (model, task) result
// (format: results/results_format.md). `moelab eval` appends to it; sweeps and
// reports read it.
//
// Appending rewrites the whole file under a temporary name and renames it into
// place, holding an advisory lock (<file>.lock, flock) meanwhile, so a crash never
// leaves a half-written line and concurrent evals on one machine do not lose each
// other's records. Free of HDF5 and torch: tools that only read results stay light.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/common/enum_words.h"

namespace moelab::results {

// What a record measured: a domain's perplexity, a multiple-choice task, timings, or an
// lm-evaluation-harness task run through `moelab lm-eval` (lm_eval_records.h).
enum class RecordKind { kPerplexity, kMultipleChoice, kEfficiency, kLmEval };
inline constexpr EnumWords<RecordKind, 4> kRecordKindWords = {{{RecordKind::kPerplexity, "perplexity"},
                                                               {RecordKind::kMultipleChoice, "multiple_choice"},
                                                               {RecordKind::kEfficiency, "efficiency"},
                                                               {RecordKind::kLmEval, "lm_eval"}}};
inline const char* to_string(RecordKind kind) { return enum_word(kRecordKindWords, kind); }

inline constexpr int kResultFormatVersion = 1;

// The fields every record has (results_format.md describes each). `metrics` maps a
// metric name to a number; `settings` and `details` are objects whose keys depend
// on `kind`.
struct ResultRecord {
  std::string model;            // model directory as given on the command line
  std::string task;             // task name (multiple choice), domain (perplexity), "efficiency"
  RecordKind kind = RecordKind::kPerplexity;
  nlohmann::json metrics = nlohmann::json::object();
  int64_t n_items = 0;          // documents, questions, or timed sequences
  int64_t n_tokens = 0;         // tokens scored (perplexity, multiple choice) or timed (efficiency)
  nlohmann::json settings = nlohmann::json::object();
  nlohmann::json details = nlohmann::json::object();
  std::string moelab_version;
  int64_t world_size = 1;
  std::string timestamp;        // UTC, ISO 8601 ("2026-05-01T12:34:56Z"); filled by now_utc() if empty
};

nlohmann::json to_json(const ResultRecord& r);
// Throws InputError(source, ...) naming the missing or mistyped field.
ResultRecord record_from_json(const nlohmann::json& j, const std::string& source);

// Appends `records` to `path` (created when absent; its folder must exist). The
// existing lines must be JSON objects, else InputError naming the file and line and
// nothing is written.
void append_records(const std::string& path, const std::vector<ResultRecord>& records);

// Every record of `path`, in file order. Throws InputError naming the file and line.
std::vector<ResultRecord> read_records(const std::string& path);

// Current time, UTC, second resolution: "YYYY-MM-DDTHH:MM:SSZ".
std::string now_utc();

}  // namespace moelab::results
