// tokenizer.json "decoder": token strings -> text.
//
// Supported types: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace,
// Sequence. Each works on the list of token strings like the Rust crate's
// Decoder::decode_chain; the final text is the concatenation of the list.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tokenizer/json_fields.h"

namespace moelab::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// nullptr for a null decoder. Throws InputError for unsupported types.
std::unique_ptr<Decoder> make_decoder(const JsonField& j);

}  // namespace moelab::tok
