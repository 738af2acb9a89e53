#include "runner/jobs/data/calibration_data.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/common/error.h"
#include "core/common/file_text.h"
#include "core/common/seeded_shuffle.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/jobs/data/text_documents.h"

namespace moelab::jobs {
std::vector<std::vector<int64_t>> read_token_id_file(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file_text(path, "calibration file"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("input_ids") || !j["input_ids"].is_array())
    throw InputError(path, "field \"input_ids\" must be a list of token-id lists");
  std::vector<std::vector<int64_t>> out;
  for (const auto& s : j["input_ids"]) {
    if (!s.is_array()) throw InputError(path, "field \"input_ids\": each entry must be a list of token ids");
    std::vector<int64_t> ids;
    for (const auto& v : s) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0)
        throw InputError(path, "field \"input_ids\": token ids must be non-negative integers");
      ids.push_back(v.get<int64_t>());
    }
    out.push_back(std::move(ids));
  }
  return out;
}

CalibrationSet load_calibration_set(const CalibrationSpec& spec) {
  if (spec.files.empty()) throw InputError("--data", "give at least one calibration file");
  if (spec.seq_len <= 0) throw InputError("--seq-len", "must be positive");
  std::vector<std::vector<int64_t>> windows;
  std::optional<Tokenizer> tok;
  std::vector<int64_t> stream;  // text tokens, all documents joined
  for (const auto& f : spec.files) {
    if (!std::filesystem::exists(f)) throw InputError(f, "no such calibration file");
    if (has_suffix(f, ".json")) {
      for (auto& s : read_token_id_file(f))
        for (size_t i = 0; i < s.size(); i += spec.seq_len)
          windows.emplace_back(s.begin() + i, s.begin() + std::min(s.size(), i + size_t(spec.seq_len)));
      continue;
    }
    // Read (and check) the documents before loading the tokenizer: a bad line is
    // reported as such even when the tokenizer is missing too.
    const std::vector<std::string> docs = read_documents(f, spec.text_field, "calibration file");
    if (!tok) {
      if (spec.tokenizer.empty()) throw InputError(f, "text calibration data needs the model's tokenizer.json");
      tok = Tokenizer::from_file(spec.tokenizer);
    }
    std::optional<int64_t> eos;
    for (const char* name : {"<|endoftext|>", "</s>", "<|im_end|>", "<eos>"})
      if (!eos) eos = tok->token_to_id(name);
    for (const auto& doc : docs) {
      auto ids = tok->encode(doc, /*add_special_tokens=*/false);
      stream.insert(stream.end(), ids.begin(), ids.end());
      if (eos) stream.push_back(*eos);
    }
  }
  for (size_t i = 0; i + size_t(spec.seq_len) <= stream.size(); i += spec.seq_len)
    windows.emplace_back(stream.begin() + i, stream.begin() + i + spec.seq_len);
  if (windows.empty())
    throw InputError(spec.files[0], "the calibration data holds fewer than seq_len = " + std::to_string(spec.seq_len) +
                                        " tokens");
  // Seeded Fisher-Yates, then the first num_samples windows.
  seeded_shuffle(windows, spec.seed);
  if (spec.num_samples > 0 && size_t(spec.num_samples) < windows.size()) windows.resize(spec.num_samples);
  CalibrationSet set;
  set.sequences = std::move(windows);
  for (const auto& s : set.sequences) set.num_tokens += int64_t(s.size());
  std::string files;
  for (const auto& f : spec.files) files += (files.empty() ? "" : ",") + f;
  set.description = files + " (seq_len " + std::to_string(spec.seq_len) + ", " + std::to_string(set.sequences.size()) +
                    " samples, seed " + std::to_string(spec.seed) + ")";
  return set;
}

}  // namespace moelab::jobs
