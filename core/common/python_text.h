// Python's view of UTF-8 text where moelab must count as lm-evaluation-harness (a Python
// program) counts: str.isspace() and the pieces of re.split(r"\s+", text).
#pragma once

#include <cstdint>
#include <string>

namespace moelab {

// Python's str.isspace() for one code point (what \s matches in a str pattern).
inline bool is_python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// The code point starting at s[i] (UTF-8, assumed valid) and its length in bytes.
inline uint32_t decode_utf8(const std::string& s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (p[0] < 0x80) return *len = 1, p[0];
  if ((p[0] & 0xE0) == 0xC0 && i + 1 < s.size()) return *len = 2, ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
  if ((p[0] & 0xF0) == 0xE0 && i + 2 < s.size())
    return *len = 3, ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  if ((p[0] & 0xF8) == 0xF0 && i + 3 < s.size())
    return *len = 4, ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  return *len = 1, p[0];
}

// len(re.split(r"\s+", text)): one more than the number of whitespace runs, so leading
// and trailing whitespace each count an empty word (lm-eval's count_words, the
// denominator of its word_perplexity).
inline int64_t python_split_whitespace_count(const std::string& text) {
  int64_t runs = 0;
  bool in_run = false;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    const bool space = is_python_space(decode_utf8(text, i, &len));
    if (space && !in_run) ++runs;
    in_run = space;
    i += len;
  }
  return runs + 1;
}

}  // namespace moelab
