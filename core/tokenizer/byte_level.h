// GPT-2's reversible byte <-> printable character mapping used by byte-level BPE:
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100..U+0143
// (so a space becomes "Ġ" and a newline "Ċ").
#pragma once

#include <string>
#include <string_view>

namespace moelab::tok {

// Every byte of `text` replaced by the UTF-8 of its mapped character.
std::string bytes_to_unicode(std::string_view text);

// The inverse for one token: false if some character of `token` is not in the
// mapping (the caller then keeps the token's raw bytes, as the Rust decoder does).
bool unicode_to_bytes(std::string_view token, std::string& bytes);

// The GPT-2 pre-tokenization regex used by ByteLevel(use_regex=true).
extern const char* const kGpt2Regex;

}  // namespace moelab::tok
