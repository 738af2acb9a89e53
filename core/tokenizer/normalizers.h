// tokenizer.json "normalizer": text -> text, applied to each piece of input
// between added tokens.
//
// Supported types: NFC, NFD, NFKC, NFKD (ICU Normalizer2), Lowercase, Strip,
// StripAccents, Replace (String or Regex pattern), Prepend, Sequence.
#pragma once

#include <memory>
#include <string>

#include "core/tokenizer/json_fields.h"

namespace moelab::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// nullptr for a null normalizer. Throws InputError for unsupported types.
std::unique_ptr<Normalizer> make_normalizer(const JsonField& j);

}  // namespace moelab::tok
