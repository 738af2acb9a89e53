// UTF-8 helpers and the few Unicode character properties the tokenizer needs
// (looked up in ICU, not in hand-written tables).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moelab::tok {

// Decodes the code point at s[pos] and advances pos past it. Returns -1 (and
// advances pos by one byte) on an invalid sequence: overlong forms, surrogates,
// values above U+10FFFF and truncated sequences are all invalid.
int32_t decode_utf8(std::string_view s, size_t& pos);

// Byte length of the (valid) UTF-8 character starting with byte `lead`.
inline size_t utf8_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t find_invalid_utf8(std::string_view s);

void append_utf8(std::string& out, int32_t cp);

// Bytes -> text the way Rust's String::from_utf8_lossy does it: every maximal
// invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Rust char::is_whitespace and regex \s: the Unicode White_Space property.
bool is_whitespace(int32_t cp);
// Rust regex \w: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control.
bool is_word_char(int32_t cp);
// Rust char::is_numeric: general category Nd, Nl or No.
bool is_numeric(int32_t cp);
// General category M (Mn, Mc, Me).
bool is_combining_mark(int32_t cp);

// First / last code point of s (-1 if s is empty).
int32_t first_char(std::string_view s);
int32_t last_char(std::string_view s);

}  // namespace moelab::tok
