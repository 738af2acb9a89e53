#include "runner/jobs/data/training_data.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/common/error.h"
#include "core/tokenizer/tokenizer.h"

namespace moelab::jobs {

std::vector<TrainingExample> load_text_examples(const CalibrationSpec& spec) {
  CalibrationSpec all = spec;
  all.num_samples = 0;
  std::vector<TrainingExample> out;
  for (auto& s : load_calibration_set(all).sequences) out.push_back({std::move(s), 1});
  return out;
}

namespace {

// Encodes SFT pairs as one tokenizer sees them: prompt with the special tokens, answer
// without, then EOS (when the tokenizer has one); the answer's tokens and EOS are targets.
class SftEncoder {
 public:
  explicit SftEncoder(const std::string& tokenizer) : tok_(Tokenizer::from_file(tokenizer)) {
    for (const char* name : {"<|endoftext|>", "</s>", "<|im_end|>", "<eos>"})
      if (!eos_) eos_ = tok_.token_to_id(name);
  }
  TrainingExample encode(const std::string& prompt, const std::string& answer, int64_t seq_len,
                         const std::string& where) const {
    TrainingExample ex;
    ex.ids = tok_.encode(prompt, /*add_special_tokens=*/true);
    ex.first_target = int64_t(ex.ids.size());
    auto a = tok_.encode(answer, /*add_special_tokens=*/false);
    ex.ids.insert(ex.ids.end(), a.begin(), a.end());
    if (eos_) ex.ids.push_back(*eos_);
    if (int64_t(ex.ids.size()) > seq_len) ex.ids.resize(seq_len);
    if (ex.first_target < 1 || ex.first_target >= int64_t(ex.ids.size()))
      throw InputError(where, "no answer tokens left within --seq-len " + std::to_string(seq_len) +
                                  " (or an empty prompt)");
    return ex;
  }

 private:
  Tokenizer tok_;
  std::optional<int64_t> eos_;
};

}  // namespace

std::vector<TrainingExample> load_sft_examples(const std::string& path, const std::string& tokenizer,
                                               const std::string& prompt_field, const std::string& answer_field,
                                               int64_t seq_len) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "cannot read the SFT file");
  const SftEncoder enc(tokenizer);
  std::vector<TrainingExample> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw InputError(where, "not a JSON object");
    }
    for (const auto& f : {prompt_field, answer_field})
      if (!j.is_object() || !j.contains(f) || !j[f].is_string())
        throw InputError(where, "missing string field \"" + f + "\"");
    out.push_back(enc.encode(j[prompt_field].get<std::string>(), j[answer_field].get<std::string>(), seq_len, where));
  }
  if (out.empty()) throw InputError(path, "no examples");
  return out;
}

std::vector<TrainingExample> sft_examples_from_task(const McTask& task, const std::string& tokenizer, int64_t seq_len) {
  const SftEncoder enc(tokenizer);
  std::vector<TrainingExample> out;
  for (size_t i = 0; i < task.items.size(); ++i) {
    const McItem& it = task.items[i];
    out.push_back(enc.encode(build_context(task, int64_t(i), {}), task.format.target_delimiter + it.choices[it.gold],
                             seq_len, task.path + ":" + std::to_string(it.line)));
  }
  return out;
}

}  // namespace moelab::jobs
