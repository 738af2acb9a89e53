// tokenizer.json "post_processor" for a single sequence: adds special tokens such
// as BOS around the encoded ids when add_special_tokens is true.
//
// Supported types: TemplateProcessing ("single" template), RobertaProcessing and
// BertProcessing (cls $A sep), ByteLevel (no effect on ids), Sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tokenizer/json_fields.h"

namespace moelab::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(std::vector<int64_t>& ids, bool add_special_tokens) const = 0;
};

// nullptr for a null post_processor. Throws InputError for unsupported types.
std::unique_ptr<PostProcessor> make_post_processor(const JsonField& j);

}  // namespace moelab::tok
