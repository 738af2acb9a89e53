// The words of an enum-like field of a saved format or an option, as one table per enum
// ({value, word} pairs) read both ways, so that the words written, the words accepted and
// the words an error lists cannot drift apart.
//
//   inline constexpr EnumWords<JobKind, 2> kJobKindWords = {{{JobKind::kPrune, "prune"}, ...}};
//   enum_word(kJobKindWords, JobKind::kPrune)          -> "prune"
//   parse_enum_word(kJobKindWords, "prune")            -> JobKind::kPrune (nullopt if unknown)
//   enum_word_list(kJobKindWords)                      -> "calibrate, score, ... or eval"
//   not_a_word_of(kJobKindWords, "pruning")            -> "\"pruning\" is not calibrate, ... or eval"
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>

namespace moelab {

template <class E, std::size_t N>
using EnumWords = std::array<std::pair<E, const char*>, N>;

template <class E, std::size_t N>
constexpr const char* enum_word(const EnumWords<E, N>& words, E value) {
  for (const auto& [e, w] : words)
    if (e == value) return w;
  return "?";  // unreachable while every enumerator has a row
}

template <class E, std::size_t N>
std::optional<E> parse_enum_word(const EnumWords<E, N>& words, const std::string& word) {
  for (const auto& [e, w] : words)
    if (word == w) return e;
  return std::nullopt;
}

// "a, b or c", for messages and help.
template <class E, std::size_t N>
std::string enum_word_list(const EnumWords<E, N>& words, const char* last = " or ") {
  std::string s;
  for (std::size_t i = 0; i < N; ++i) s += (i == 0 ? "" : i + 1 == N ? last : ", ") + std::string(words[i].second);
  return s;
}

// The refusal of a word that is not in the table, one wording for every reader.
template <class E, std::size_t N>
std::string not_a_word_of(const EnumWords<E, N>& words, const std::string& word) {
  return "\"" + word + "\" is not " + enum_word_list(words);
}

}  // namespace moelab
