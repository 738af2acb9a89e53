// A Hugging Face tokenizer.json reader and encoder/decoder that gives the same ids
// as the Python `tokenizers` library (Tokenizer.from_file(path).encode(text).ids).
//
// Covers the BPE tokenizers of current MoE models:
//   * byte-level BPE (Qwen2/Qwen3, GPT-2, Llama-3, DeepSeek): NFC or no normalizer,
//     Split(regex) + ByteLevel(use_regex=false) or ByteLevel(use_regex=true),
//     merges as "a b" strings or ["a", "b"] pairs, ignore_merges;
//   * SentencePiece-style BPE (Llama-2, Mistral, Mixtral): Prepend("▁") +
//     Replace(" " -> "▁") normalizers, or a Metaspace pre-tokenizer; byte_fallback
//     to <0xXX> tokens, unk_token, fuse_unk; TemplateProcessing adding <s>.
//
// Encoding runs the pipeline of the Rust crate:
//   1. added tokens with normalized=false are cut out of the raw text (longest
//      match first; lstrip/rstrip/single_word honoured);
//   2. every other piece is normalized, then added tokens with normalized=true are
//      cut out of it;
//   3. the pre_tokenizer splits pieces into words; the BPE model encodes each word;
//   4. the post_processor adds special tokens (when add_special_tokens is true).
//
// Supported components (anything else is rejected when the file is loaded, with an
// InputError naming the file and the field):
//   normalizer:     NFC NFD NFKC NFKD Lowercase Strip StripAccents Replace Prepend Sequence
//   pre_tokenizer:  ByteLevel Split Metaspace Digits Sequence
//   model:          BPE (not WordPiece, Unigram, WordLevel; no dropout)
//   post_processor: TemplateProcessing RobertaProcessing BertProcessing ByteLevel Sequence
//   decoder:        ByteLevel ByteFallback Fuse Strip Replace Metaspace Sequence
// "truncation" and "padding" in the file are ignored (as transformers does unless
// asked to truncate or pad), so a long text is always encoded whole.
//
// Regexes run on PCRE2 (UTF + UCP), the Rust crate uses Oniguruma: the one known
// difference is that \s also matches U+180E MONGOLIAN VOWEL SEPARATOR here. Unicode
// normalization uses ICU, whose Unicode version may differ slightly from the crate's.
//
// Thread-safety: a loaded Tokenizer is immutable apart from an internal word cache
// guarded by a mutex; encode/decode may be called from several threads. Copies
// share the loaded tables.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moelab {

class Tokenizer {
 public:
  // Loads `path`: a tokenizer.json file, or a directory that contains one.
  // Throws InputError("<file>", "<field> <problem>") for an unreadable, malformed or
  // unsupported file; the message is a single line.
  static Tokenizer from_file(const std::string& path);
  // Same, from the JSON text; `source` names it in error messages.
  static Tokenizer from_json(const std::string& json_text, const std::string& source);

  // Token ids of `text` (UTF-8). With add_special_tokens the post_processor's
  // special tokens (e.g. <s>) are added, as `tokenizers`' Tokenizer.encode does by
  // default. Throws InputError("input text: not valid UTF-8 ...") for invalid UTF-8.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;

  // Text of `ids` through the file's decoder (tokens joined by spaces without one).
  // Unknown ids are skipped; skip_special_tokens drops added tokens marked special.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  // Number of distinct tokens, added tokens included (get_vocab_size(True)).
  int64_t vocab_size() const;
  std::optional<int64_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int64_t id) const;
  // Whether `id` is an added token marked "special" (e.g. <s>, <|im_end|>).
  bool is_special(int64_t id) const;

  // The file this tokenizer was loaded from.
  const std::string& source() const;

  struct Impl;  // opaque

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace moelab
