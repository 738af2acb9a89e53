// Patterns that split or replace text: a PCRE2 regular expression (UTF + UCP mode,
// JIT-compiled when available) or a literal string.
//
// find_matches() mirrors the `Pattern::find_matches` of the Rust `tokenizers` crate:
// it returns segments that cover the whole input, each flagged as a match or not.
// Iteration follows Oniguruma's find_iter: an empty match right where the previous
// match ended is skipped and the search moves on by one character.
//
// Known difference from Oniguruma: with PCRE2_UCP, \s also matches U+180E
// (MONGOLIAN VOWEL SEPARATOR), which Oniguruma's \s (White_Space) does not.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moelab::tok {

class JsonField;

struct Segment {
  size_t start, end;
  bool is_match;
};

class Pattern {
 public:
  // Throws std::invalid_argument with PCRE2's message if `regex` does not compile.
  static Pattern regex(const std::string& regex);
  static Pattern literal(const std::string& text);

  // Segments covering `s` (one non-match segment (0,0) for an empty string).
  std::vector<Segment> find_matches(std::string_view s) const;
  // Only the matches, as (start, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

  const std::string& source() const { return source_; }

 private:
  struct Compiled;
  // Next match at or after `from`; false if none.
  bool search(std::string_view s, size_t from, size_t& start, size_t& end) const;

  std::string source_;
  bool is_regex_ = false;
  std::shared_ptr<Compiled> compiled_;
};

// A tokenizer.json pattern object: {"String": "literal"} or {"Regex": "..."}.
// Throws InputError naming the field if it is malformed or does not compile.
Pattern make_pattern(const JsonField& j);

}  // namespace moelab::tok
