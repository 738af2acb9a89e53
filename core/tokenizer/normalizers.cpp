#include "core/tokenizer/normalizers.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <stdexcept>
#include <vector>

#include "core/tokenizer/pattern.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(const icu::Normalizer2* n) : n_(n) {}
  void normalize(std::string& text) const override {
    if (text.empty()) return;
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    if (n_->isNormalized(u, status) && U_SUCCESS(status)) return;
    status = U_ZERO_ERROR;
    icu::UnicodeString out = n_->normalize(u, status);
    if (U_FAILURE(status))
      throw std::runtime_error(std::string("ICU normalization failed: ") + u_errorName(status));
    text.clear();
    out.toUTF8String(text);
  }

 private:
  const icu::Normalizer2* n_;
};

// Rust's char::to_lowercase, one character at a time (no context such as the
// final-sigma rule, as in the Rust crate).
class Lowercase : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
      size_t start = pos;
      int32_t cp = decode_utf8(text, pos);
      if (cp < 0x80) {
        char c = text[start];
        out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        continue;
      }
      UChar src[2];
      int32_t src_len = 0;
      U16_APPEND_UNSAFE(src, src_len, cp);
      UChar dst[8];
      UErrorCode status = U_ZERO_ERROR;
      int32_t n = u_strToLower(dst, 8, src, src_len, "", &status);
      if (U_FAILURE(status) || n > 8) {
        out.append(text, start, pos - start);
        continue;
      }
      icu::UnicodeString(dst, n).toUTF8String(out);
    }
    text = std::move(out);
  }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t pos = begin;
        if (!is_whitespace(decode_utf8(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!is_whitespace(decode_utf8(text, pos))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class StripAccents : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
      size_t start = pos;
      int32_t cp = decode_utf8(text, pos);
      if (!is_combining_mark(cp)) out.append(text, start, pos - start);
    }
    text = std::move(out);
  }
};

class Replace : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    if (text.empty()) return;
    auto matches = pattern_.find_all(text);
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size());
    size_t prev = 0;
    for (auto [start, end] : matches) {
      out.append(text, prev, start - prev);
      out += content_;
      prev = end;
    }
    out.append(text, prev, std::string::npos);
    text = std::move(out);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& text) const override {
    for (const auto& p : parts_) p->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

const icu::Normalizer2* icu_form(const JsonField& j, const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  if (type == "NFC") n = icu::Normalizer2::getNFCInstance(status);
  else if (type == "NFD") n = icu::Normalizer2::getNFDInstance(status);
  else if (type == "NFKC") n = icu::Normalizer2::getNFKCInstance(status);
  else n = icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || !n) j.fail(std::string("cannot load ICU ") + type + " data: " + u_errorName(status));
  return n;
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const JsonField& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<UnicodeForm>(icu_form(j, type));
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(j.at("strip_left").boolean(), j.at("strip_right").boolean());
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Replace")
    return std::make_unique<Replace>(make_pattern(j.at("pattern")), j.at("content").str());
  if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").str());
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& item : j.at("normalizers").items()) {
      auto n = make_normalizer(item);
      if (n) parts.push_back(std::move(n));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  j.unsupported_type(type,
                     "NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Sequence");
}

}  // namespace moelab::tok
