// The calibration set: text files, JSONL files (a "text" field per line) or token-id
// files (JSON {"input_ids": [[...], ...]}), turned into a fixed number of sequences
// of a fixed length, chosen with a seed.
//
// Text and JSONL documents are tokenized (tokenizer.json of the model), joined with
// the EOS token when the tokenizer has one, and cut into consecutive windows of
// seq_len tokens; token-id sequences longer than seq_len are cut likewise (shorter
// ones are kept whole). num_samples windows are then drawn without replacement by a
// seeded Fisher-Yates shuffle (splitmix64; the same on every platform). Every rank
// builds the same list, so ranks agree without communicating.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moelab::jobs {

struct CalibrationSpec {
  std::vector<std::string> files;  // .txt, .jsonl, .json (token ids)
  std::string tokenizer;           // tokenizer.json or a directory holding one
  int64_t seq_len = 512;
  int64_t num_samples = 128;       // 0 = all windows
  uint64_t seed = 0;
  std::string text_field = "text";
};

struct CalibrationSet {
  std::vector<std::vector<int64_t>> sequences;
  int64_t num_tokens = 0;
  std::string description;  // files, seq_len, samples, seed (for the HDF5 attributes)
};

// Throws InputError naming the file (and line) for unreadable or malformed inputs.
CalibrationSet load_calibration_set(const CalibrationSpec& spec);

// A token-id file {"input_ids": [[1, 2, 3], [4, 5]]}: the sequences as written (empty
// ones included). Throws InputError naming the file for anything else.
std::vector<std::vector<int64_t>> read_token_id_file(const std::string& path);

}  // namespace moelab::jobs
