// tokenizer.json "model" of type BPE: vocab, ranked merges, byte fallback, unk.
//
// encode_word() follows the Rust crate's BPE::tokenize: with ignore_merges a word
// that is in the vocabulary is emitted whole; otherwise the word is split into
// characters (unknown ones become <0xXX> byte tokens with byte_fallback, or the
// unk token, fused if fuse_unk) and the lowest-ranked adjacent pair is merged until
// no merge applies. Results for short words are cached (thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/json_fields.h"

namespace moelab::tok {

class BpeModel {
 public:
  // Throws InputError naming the field for a malformed or unsupported model.
  explicit BpeModel(const JsonField& model);

  // Appends the ids of `word` (non-empty) to `out`.
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;

  std::optional<int64_t> token_to_id(const std::string& token) const;
  const std::string* id_to_token(int64_t id) const;
  size_t vocab_size() const { return vocab_.size(); }

 private:
  void merge_word(std::string_view word, std::vector<uint32_t>& ids) const;
  void apply_merges(std::vector<uint32_t>& ids) const;

  std::string file_;
  std::unordered_map<std::string, uint32_t> vocab_;
  std::unordered_map<uint32_t, std::string> vocab_r_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;
  std::optional<std::string> unk_token_;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  bool has_prefix_ = false, has_suffix_ = false;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  int64_t byte_ids_[256];  // id of "<0xXX>", -1 if absent

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache_;
};

}  // namespace moelab::tok
