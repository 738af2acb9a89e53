#include "jobs/training_data.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace moelab::jobs {

std::vector<TrainingExample> load_text_examples(const CalibrationSpec& spec) {
  CalibrationSpec all = spec;
  all.num_samples = 0;
  std::vector<TrainingExample> out;
  for (auto& s : load_calibration_set(all).sequences) out.push_back({std::move(s), 1});
  return out;
}

std::vector<TrainingExample> load_sft_examples(const std::string& path, const std::string& tokenizer,
                                               const std::string& prompt_field, const std::string& answer_field,
                                               int64_t seq_len) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "cannot read the SFT file");
  Tokenizer tok = Tokenizer::from_file(tokenizer);
  std::optional<int64_t> eos;
  for (const char* name : {"<|endoftext|>", "</s>", "<|im_end|>", "<eos>"})
    if (!eos) eos = tok.token_to_id(name);
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
    TrainingExample ex;
    ex.ids = tok.encode(j[prompt_field].get<std::string>(), /*add_special_tokens=*/true);
    ex.first_target = int64_t(ex.ids.size());
    auto answer = tok.encode(j[answer_field].get<std::string>(), /*add_special_tokens=*/false);
    ex.ids.insert(ex.ids.end(), answer.begin(), answer.end());
    if (eos) ex.ids.push_back(*eos);
    if (int64_t(ex.ids.size()) > seq_len) ex.ids.resize(seq_len);
    if (ex.first_target < 1 || ex.first_target >= int64_t(ex.ids.size()))
      throw InputError(where, "no answer tokens left within --seq-len " + std::to_string(seq_len) +
                                  " (or an empty prompt)");
    out.push_back(std::move(ex));
  }
  if (out.empty()) throw InputError(path, "no examples");
  return out;
}

}  // namespace moelab::jobs
