// tokenizer.json "pre_tokenizer": splits each normalized piece into the words the
// model encodes separately (and, for ByteLevel, maps bytes to printable characters).
//
// Supported types: ByteLevel, Split (String or Regex pattern, every behavior,
// invert), Metaspace (prepend_scheme always/first/never, split), Digits, Sequence.
#pragma once

#include <memory>
#include <vector>

#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/pieces.h"

namespace moelab::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every text piece by its sub-pieces; added-token pieces pass through.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// nullptr for a null pre_tokenizer. Throws InputError for unsupported types.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonField& j);

// Parses a SplitDelimiterBehavior name ("Isolated", ...).
SplitBehavior parse_split_behavior(const JsonField& j);

}  // namespace moelab::tok
