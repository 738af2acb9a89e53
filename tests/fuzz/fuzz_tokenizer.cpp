// Fuzzes tokenizer.json: the loader (normalizers, pre-tokenizers, BPE model, added
// tokens, post-processor, decoder) and, for an accepted file, one encode/decode round
// over text with ASCII, multi-byte UTF-8, digits, whitespace runs and an added token.
#include "core/common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = moelab::Tokenizer::from_json(text, "tokenizer.json");
    const auto ids = tok.encode("Hello  world 123 \xc3\xbc\xe2\x82\xac <s>\n\tend");
    (void)tok.decode(ids);
  } catch (const moelab::InputError&) {
  }
  return 0;
}
