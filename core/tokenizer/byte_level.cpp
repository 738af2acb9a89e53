#include "core/tokenizer/byte_level.h"

#include <array>

#include "core/tokenizer/utf8.h"

namespace moelab::tok {

const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

struct Tables {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int, 0x144> char_to_byte;  // code point -> byte, -1 if unmapped

  Tables() {
    char_to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      int cp = printable ? b : next++;
      append_utf8(byte_to_utf8[b], cp);
      char_to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

std::string bytes_to_unicode(std::string_view text) {
  const auto& t = tables();
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char c : text) out += t.byte_to_utf8[c];
  return out;
}

bool unicode_to_bytes(std::string_view token, std::string& bytes) {
  const auto& t = tables();
  size_t pos = 0;
  size_t mark = bytes.size();
  while (pos < token.size()) {
    int32_t cp = decode_utf8(token, pos);
    if (cp < 0 || cp >= static_cast<int32_t>(t.char_to_byte.size()) || t.char_to_byte[cp] < 0) {
      bytes.resize(mark);
      return false;
    }
    bytes += static_cast<char>(t.char_to_byte[cp]);
  }
  return true;
}

}  // namespace moelab::tok
