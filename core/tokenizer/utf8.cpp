#include "core/tokenizer/utf8.h"

#include <unicode/uchar.h>

namespace moelab::tok {
namespace {

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the longest valid prefix of a sequence starting at s[i] (0 if s[i]
// cannot start a sequence), and whether the whole sequence is valid. Follows the
// Unicode "maximal subpart" rules, which Rust's from_utf8_lossy implements.
size_t valid_prefix(std::string_view s, size_t i, bool& complete) {
  auto b0 = static_cast<unsigned char>(s[i]);
  complete = false;
  if (b0 < 0x80) {
    complete = true;
    return 1;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t got = 1;
  for (; got < need; ++got) {
    if (i + got >= s.size()) return got;
    auto c = static_cast<unsigned char>(s[i + got]);
    if (got == 1 ? (c < lo || c > hi) : !is_cont(c)) return got;
  }
  complete = true;
  return need;
}

}  // namespace

int32_t decode_utf8(std::string_view s, size_t& pos) {
  bool complete;
  size_t n = valid_prefix(s, pos, complete);
  if (!complete) {
    pos += 1;
    return -1;
  }
  auto b = [&](size_t k) { return static_cast<int32_t>(static_cast<unsigned char>(s[pos + k])); };
  int32_t cp;
  switch (n) {
    case 1: cp = b(0); break;
    case 2: cp = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F); break;
    case 3: cp = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F); break;
    default:
      cp = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
  pos += n;
  return cp;
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t at = i;
    if (decode_utf8(s, i) < 0) return at;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, int32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    bool complete;
    size_t n = valid_prefix(bytes, i, complete);
    if (complete) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += n == 0 ? 1 : n;
    }
  }
  return out;
}

bool is_whitespace(int32_t cp) { return cp >= 0 && u_isUWhiteSpace(cp); }

bool is_word_char(int32_t cp) {
  if (cp < 0) return false;
  if (u_hasBinaryProperty(cp, UCHAR_ALPHABETIC) || u_hasBinaryProperty(cp, UCHAR_JOIN_CONTROL))
    return true;
  return (U_GET_GC_MASK(cp) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

bool is_numeric(int32_t cp) { return cp >= 0 && (U_GET_GC_MASK(cp) & U_GC_N_MASK) != 0; }

bool is_combining_mark(int32_t cp) { return cp >= 0 && (U_GET_GC_MASK(cp) & U_GC_M_MASK) != 0; }

int32_t first_char(std::string_view s) {
  if (s.empty()) return -1;
  size_t pos = 0;
  return decode_utf8(s, pos);
}

int32_t last_char(std::string_view s) {
  if (s.empty()) return -1;
  size_t start = s.size() - 1;
  while (start > 0 && is_cont(static_cast<unsigned char>(s[start]))) --start;
  return decode_utf8(s, start);
}

}  // namespace moelab::tok
