// Examples for fine-tuning: next-token text (every token after the first is a
// target) or supervised prompt/answer pairs (only the answer's tokens are targets).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/eval/multiple_choice.h"

namespace moelab::jobs {

struct TrainingExample {
  std::vector<int64_t> ids;
  int64_t first_target = 1;  // tokens at positions >= first_target are predicted
};

// Text / JSONL text / token-id files, cut into seq_len windows as calibration data
// is (all windows, shuffled with the seed).
std::vector<TrainingExample> load_text_examples(const CalibrationSpec& spec);

// JSONL, one {"<prompt_field>": "...", "<answer_field>": "..."} per line: ids =
// tokenize(prompt, with the tokenizer's special tokens) + tokenize(answer) + EOS (when
// the tokenizer has one); targets = the answer's tokens and EOS. Examples longer than
// seq_len lose their answer's end; an example whose answer would vanish is an error
// naming the line.
std::vector<TrainingExample> load_sft_examples(const std::string& path, const std::string& tokenizer,
                                               const std::string& prompt_field, const std::string& answer_field,
                                               int64_t seq_len);

// SFT on a multiple-choice task's items: prompt = the item's zero-shot context as
// evaluation builds it (description, template), answer = target_delimiter + the right
// choice; encoded and cut as load_sft_examples does. Training on what the task scores.
std::vector<TrainingExample> sft_examples_from_task(const McTask& task, const std::string& tokenizer, int64_t seq_len);

}  // namespace moelab::jobs
