// tokenizer.json "added_tokens": strings (special tokens such as "<|im_start|>",
// and user-added ones) that are cut out of the input before the model sees it and
// map directly to their ids.
//
// As in the Rust crate: ids are the model's id when the content is in the model
// vocabulary, otherwise new ids after the model's (the "id" field is not trusted);
// tokens with normalized=false are matched in the raw input, tokens with
// normalized=true in the normalized input (against their normalized content);
// matching is leftmost-longest; single_word, lstrip and rstrip are honoured.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/normalizers.h"
#include "core/tokenizer/pieces.h"

namespace moelab::tok {

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `tokens` is the "added_tokens" array (or null).
  AddedVocabulary(const JsonField& tokens, const BpeModel& model, const Normalizer* normalizer);

  // Cuts the tokens matched in raw (normalized == false) or normalized text out of
  // every text piece.
  void split_raw(std::vector<Piece>& pieces) const { split(pieces, raw_); }
  void split_normalized(std::vector<Piece>& pieces) const { split(pieces, normalized_); }

  std::optional<int64_t> token_to_id(const std::string& content) const;
  // The string the decoder sees for an added id (its normalized form when the token
  // is normalized), or nullptr if `id` is not an added token.
  const std::string* decode_form(int64_t id) const;
  bool is_special_content(const std::string& token) const { return special_.count(token) != 0; }
  bool is_special_id(int64_t id) const;
  const std::unordered_map<std::string, uint32_t>& contents() const { return by_content_; }

 private:
  // A byte trie for leftmost-longest matching.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> next;
      int64_t id = -1;
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    bool empty() const { return nodes.size() == 1; }
    void insert(const std::string& pattern, uint32_t id);
    // Longest pattern starting at s[pos]: its id and length, or id -1.
    std::pair<int64_t, size_t> longest_at(const std::string& s, size_t pos) const;
  };

  void split(std::vector<Piece>& pieces, const Trie& trie) const;
  void rebuild_tries();

  std::unordered_map<std::string, uint32_t> by_content_;
  std::unordered_map<uint32_t, AddedToken> by_id_;
  std::unordered_map<uint32_t, std::string> normalized_form_;
  std::unordered_set<std::string> special_;
  Trie raw_, normalized_;
};

}  // namespace moelab::tok
